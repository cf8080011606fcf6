# Power cuts inside LittleFS, on the ESP32's flash geometry (lfsflash.Flash): every write the
# firmware makes is cut at each of its program/erase operations in turn, and the flash it leaves
# must mount as a board's _boot.py mounts it, boot (wispboot, wisp.app.build, memory, routines:
# the firmware's own loaders) without raising or logging an error, and hold, file by file,
# either the state before that write or the state after it; the device must then still save.
# Runs on MicroPython: `micropython lfssweep.py IMAGE [options]` (test_lfs_power_cut.py and
# bench/lfs_power_cut.py drive it). Prints one "SWEEP ..." line per scenario, "FAIL ..." lines.
import asyncio
import hashlib
import json
import struct
import sys
import time

import lfsflash

KEY = "5e" * 32                         # the device's signing key (config.json "key")
PINS = {"porch_light": {"pin": 25, "mode": "out", "restore": "last"},
        "fan": {"pin": 26, "mode": "out"}}
CONFIG = {"id": "t1", "broker": {"host": "127.0.0.1", "port": 1}, "pins": PINS, "key": KEY}
JOB_STATE = ("name", "spec", "action", "missed", "tz", "llm")   # "next" depends on the clock
STATS = {"double": 0, "resumed": 0, "alive": 0}  # boots cut after a cut; updates resumed; saves after a cut


# ---- one boot --------------------------------------------------------------------------------
class Link:
    """The MQTT link as the agent uses it, with an OTA host behind it: each ota/need is answered at
    once with the chunk asked for, from `bundle` (as tools/ota.py serves it)."""

    def __init__(self, dev):
        self.dev, self.bundle, self.up, self.connects = dev, None, True, 1

    async def publish(self, topic, payload, retain=False, qos=0, wait_ms=0):
        if topic.endswith("/ota/need") and self.bundle is not None:
            need = json.loads(payload)
            man, data = self.bundle
            off = need["off"]
            self.dev.ota_job.take(struct.pack(">I", off) + man[:8].encode() + data[off:off + need["n"]])
        return True

    async def subscribe(self, topic):
        pass


def boot():
    """What a board does with its flash at power-on, as far as files go: boot.py drives the
    outputs early (config.json, pins_warm), wispboot picks the firmware slot (and counts a trial
    boot), wisp.app.build reads config.json, counts the boot, sets up the pins (pins_warm,
    pins_last), loads the schedule (jobs.json, tz.json) and the commands' replay floor; memory
    and routines load on first use: here at once."""
    from wisp.hal import Board, early
    early.drive(Board())
    import wispboot
    pointer = wispboot.select()
    while sys.path and sys.path[0].startswith("ota/"):
        sys.path.pop(0)  # the slot's files are test data, not code to import
    from wisp import app
    app.device = app.agent = None
    dev, _agent = app.build()
    dev.board.exit_on_reset = False   # an OTA switch resets: counted, not the end of the process
    dev.link = Link(dev)
    dev.pointer = pointer
    for name in ("memory", "routines"):
        getattr(dev, name)  # Device loads them on first use
    return dev


def state(dev):
    """What the booted device holds, one entry per file it keeps."""
    from wisp import command, store
    p = dev.pointer if isinstance(dev.pointer, dict) else {}
    return {
        "memory.json": (dev.memory.pairs(), sorted(dev.memory.llm_keys())),
        "routines.json": (dev.routines.all(), sorted(dev.routines.llm_names())),
        "jobs.json": sorted([[j.get(k) for k in JOB_STATE] for j in dev.sched.jobs()]),
        "tz.json": dev.config.get("tz"),
        "ota.json": [p.get(k) for k in ("cur", "ver", "trial", "tries", "state")],
        "boots": dev.boots,
        "cmd_floor": command.load_floor(),
        "pins_last.json": sorted((name, pin.read()) for name, pin in dev.pins.items()),
        "ha.json": store.load("ha", None),
    }


def slot_error(dev):
    """Why the slot ota.json points at is not the complete, checked bundle, or None."""
    p = dev.pointer
    if not isinstance(p, dict) or p.get("cur") not in ("a", "b"):
        return None
    from wisp import ota
    try:
        with open("ota/%s/%s" % (p["cur"], ota.MANIFEST), "rb") as f:
            man = f.read()
        files = man.count(b"\n")
        o = {"man": p.get("man"), "msize": len(man), "files": files, "slot": p["cur"]}
        ota.Job(dev, o).verify()
    except Exception as e:
        return "ota.json points at slot %s, which fails its check: %r" % (p["cur"], e)
    return None


# ---- the firmware's writes -------------------------------------------------------------------
def tool(name, args, llm=0):
    """A tool call as the LLM or a command makes it: the write it causes must answer ok."""
    async def step(dev):
        from wisp import tools
        result = await tools.run(dev, name, args, llm)
        if not result.startswith("ok"):
            raise OSError("%s answered %s" % (name, result))
    return "%s %s" % (name, json.dumps(args)[:40]), step


def call(what, fn):
    async def step(dev):
        r = fn(dev)
        if r is not None and hasattr(r, "send"):
            await r
    return what, step


def nothing(dev):
    return None  # the boot before it is the write: the boot counter, a trial boot's count


def _bundle(ver, n_files):
    """An OTA bundle: manifest text and the bytes of manifest + files, as tools/otabundle.py lays it."""
    files, lines = [], []
    for i in range(n_files):
        data = bytes((i * 7 + j * 13) & 0xFF for j in range(700 + 900 * i))  # over the inline size
        files.append(data)
        lines.append("%s %d wisp/zz%d.mpy\n" % (_hex(hashlib.sha256(data).digest()), len(data), i))
    man = "".join(lines).encode()
    return _hex(hashlib.sha256(man).digest()), man + b"".join(files), len(man), n_files


def _hex(b):
    import binascii
    return binascii.hexlify(b).decode()


def ota_update(ver, n_files=3):
    """A signed offer taken and the whole update fetched, checked and switched to, as the real
    ota.on_offer and ota.Job run it, the host answering every chunk at once."""
    man, data, msize, files = _bundle(ver, n_files)

    async def step(dev):
        from wisp import limits, ota, sign
        from wisp.sched import unix_time
        limits.OTA_GAP_MS = 0  # the pause between chunks is for the event loop, not the flash
        dev.link.bundle = (man, data)
        offer = {"v": 1, "dev": dev.id, "ver": ver, "man": man, "msize": msize, "size": len(data),
                 "files": files, "force": False, "health_s": 60, "ts": unix_time()}
        await ota.on_offer(dev, sign.sign(sign.key_from_hex(KEY), json.dumps(offer).encode()))
        await _ota_done(dev)

    async def resume(dev):
        """After a cut: an offer saved before it is fetched on from where it stopped and switched to
        at the next connect; with none saved, the host offers again (nothing to check here)."""
        from wisp import store
        pending = store.load("ota/offer", None)
        dev.link.bundle = (man, data)
        await ota_connect(dev)
        if pending is not None:
            if store.load("ota", {}).get("ver") != ver:
                raise Failure("the update cut by the power loss did not resume to %s at the next connect" % ver)
            STATS["resumed"] += 1
    return "ota update to %s" % ver, step, resume


async def _ota_done(dev):
    for _ in range(2000):
        if getattr(dev, "ota_job", None) is None:
            return
        await asyncio.sleep_ms(1)
    raise OSError("the OTA job did not finish")


async def ota_connect(dev):
    """After a connect: confirms a version on trial, resumes a transfer a cut stopped."""
    from wisp import ota
    await ota.on_connect(dev)
    await _ota_done(dev)


def signed_command(ts):
    async def step(dev):
        from wisp.commands import Commands
        err = Commands(dev).fresh("c%d" % ts, ts)
        if err:
            raise OSError(err)
    return "signed command", step


def ha_topics(dev):
    from wisp import ha_discovery
    ha_discovery.stale(dev, True)


def keep_levels(dev):
    from wisp import pins
    pins.keep_levels(dev.pins)


def scenarios():
    """(name, steps): each a series of writes as a user, the LLM or the device makes them."""
    from wisp.sched import unix_time
    now = unix_time()
    pulse = [{"tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}},
             {"tool": "gpio_read", "args": {"pin": "fan"}},
             {"tool": "gpio_write", "args": {"pin": "porch_light", "value": 0}}]
    return [
        ("memory", [tool("memory_set", {"key": "name", "value": "Ada"}),
                    tool("memory_set", {"key": "plants", "value": 3}, llm=1),
                    tool("memory_set", {"key": "note", "value": "x" * 180}),
                    tool("memory_set", {"key": "name", "value": "Grace"}),
                    tool("memory_delete", {"key": "plants"}),
                    tool("memory_set", {"key": "long", "value": "y" * 200})]),
        ("routines", [tool("routine_define", {"name": "blink", "steps": pulse}),
                      tool("routine_define", {"name": "night", "steps": pulse * 4}, llm=1),
                      tool("routine_delete", {"name": "blink"}),
                      tool("routine_define", {"name": "night", "steps": pulse})]),
        ("schedule", [tool("schedule_add", {"spec": "every 1h", "name": "hourly", "routine": "night"}),
                      tool("timezone_set", {"tz": "CET-1CEST,M3.5.0,M10.5.0/3"}),
                      tool("schedule_add", {"spec": "30 7 * * 1-5", "name": "wake", "prompt": "x" * 150}),
                      tool("schedule_remove", {"name": "hourly"}),
                      tool("timezone_set", {"tz": "UTC0"})]),
        ("device", [call("boot counter", nothing),
                    signed_command(now), signed_command(now + 1),
                    tool("gpio_write", {"pin": "porch_light", "value": 1}),
                    call("pins_warm (keep_levels)", keep_levels),
                    call("ha.json", ha_topics),
                    tool("gpio_write", {"pin": "porch_light", "value": 0})]),
        ("ota", [ota_update("0.2.0"),
                 call("trial boot", nothing), call("trial boot", nothing),
                 call("confirm after connect", ota_connect)]),
        ("ota-rollback", [ota_update("0.3.0", 2)] + [call("trial boot", nothing)] * 4),
    ]


# ---- the sweep ---------------------------------------------------------------------------------
class Failure(Exception):
    pass


def _run(step, dev):
    asyncio.run(step(dev))


def booted_state(image):
    """Mount image as a fresh boot does, boot, and return (dev, state); Failure when the mount
    fails, the boot raises or logs an error, or the OTA slot pointed at is not whole."""
    from wisp import log as wlog
    flash = lfsflash.Flash(image)
    try:
        lfsflash.mount(flash)
    except OSError as e:
        raise Failure("the flash does not mount (a board would stop at 'filesystem appears to be "
                      "corrupted'): %r" % (e,)) from None
    errors = wlog.errors
    try:
        dev = boot()
        got = state(dev)
    except Exception as e:
        lfsflash.unmount()
        raise Failure("the boot raised %r" % (e,)) from None
    if wlog.errors != errors:
        lfsflash.unmount()
        raise Failure("the boot logged errors: %s" % " | ".join(wlog.recent(wlog.errors - errors)))
    why = slot_error(dev)
    if why:
        lfsflash.unmount()
        raise Failure(why)
    return dev, got, flash.ops


def check_alive(image, n):
    """The device that booted from a cut flash keeps saving: a fact set now is there after the
    next boot. image is mounted and booted (booted_state)."""
    from wisp import tools
    dev = boot()
    result = asyncio.run(tools.run(dev, "memory_set", {"key": "alive", "value": n}))
    lfsflash.unmount()
    if not result.startswith("ok"):
        raise Failure("after the cut, saving a fact answered %s" % result)
    dev, _got, _ops = booted_state(image)
    lfsflash.unmount()
    if dev.memory.get("alive") != n:
        raise Failure("after the cut, a fact saved was gone at the next boot")
    STATS["alive"] += 1


def sweep(name, steps, base, torn=(0,), alive=False, cut_limit=None, double=False, erased=None, out=print):
    """Cut each step of one scenario (a boot, then one write) at each of its operations, for each
    tearing in torn (0: the cut operation does nothing; k: k quarters of it happen). A cut inside
    the boot must leave the state before it or after it; a cut inside the write, the state after
    the boot or after the write. Returns (cut points, failures, the flash after every step).
    cut_limit: at most this many cut points per step, spread evenly; double: cut the boot after
    each cut too, at each of its operations; erased: {block: erases} over the uncut runs."""
    size = len(base)
    img, work, fresh = bytearray(base), bytearray(size), bytearray(size)
    before, _ops = _state_of(img, fresh)
    cuts = fails = 0
    outcomes = {"before": 0, "after": 0, "mixed": 0}
    for i, entry in enumerate(steps):
        what, step, resume = entry[0], entry[1], entry[2] if len(entry) > 2 else None
        work[:] = img
        flash = lfsflash.Flash(work, erased=erased)
        lfsflash.mount(flash)
        dev = boot()
        booted_ops, booted_img = flash.ops, bytearray(work)
        _run(step, dev)
        lfsflash.unmount()
        total = flash.ops
        try:
            booted, _ops = _state_of(booted_img, fresh)
            after, _ops = _state_of(work, fresh)
            if double:  # each state once more, as one more boot leaves it (a cut boot may count)
                rebooted = [_state_of(_booted(x, fresh), fresh)[0] for x in (img, booted_img, work)]
        except Failure as e:
            out("FAIL %s step %d (%s) without a cut: %s" % (name, i, what, e))
            return cuts, fails + 1, img
        points = range(total)
        if cut_limit and total > cut_limit:
            points = sorted(set(n * (total - 1) // (cut_limit - 1) for n in range(cut_limit)))
        flipped = {}
        for n in points:
            old, new = (before, booted) if n < booted_ops else (booted, after)
            also = () if not double else rebooted[:2] if n < booted_ops else rebooted[1:]
            if n == booted_ops:
                flipped = {}  # the write starts from the booted state
            for t in torn:
                cuts += 1
                try:
                    outcome = _cut(step, img, work, fresh, n, t, old, new, flipped, alive, resume, also)
                    outcomes[outcome] += 1
                except Failure as e:
                    fails += 1
                    out("FAIL %s step %d (%s) cut at operation %d of %d (%s)%s: %s"
                        % (name, i, what, n, total, "boot" if n < booted_ops else "write",
                           " torn %d/4" % t if t else "", e))
                    lfsflash.unmount()
        work[:] = img
        lfsflash.mount(lfsflash.Flash(work))
        _run(step, boot())
        lfsflash.unmount()
        img[:] = work
        before = after
    out("SWEEP %s steps=%d cuts=%d before=%d after=%d mixed=%d failures=%d"
        % (name, len(steps), cuts, outcomes["before"], outcomes["after"], outcomes["mixed"], fails))
    return cuts, fails, img


def _booted(image, scratch):
    """scratch: image after one more boot."""
    scratch[:] = image
    lfsflash.mount(lfsflash.Flash(scratch))
    boot()
    lfsflash.unmount()
    return scratch


def _state_of(image, scratch):
    """The state a boot finds on image (booted on a copy in scratch: image stays as it is), and
    the number of operations that boot made."""
    scratch[:] = image
    _dev, got, ops = booted_state(scratch)
    lfsflash.unmount()
    return got, ops


def _cut(step, img, work, fresh, n, t, before, after, flipped, alive, resume, also):
    work[:] = img
    flash = lfsflash.Flash(work, n, t)
    lfsflash.mount(flash)  # the mount itself only reads
    try:
        _run(step, boot())
    except Exception as e:
        if not flash.dead:
            raise Failure("the step raised %r with the power still on" % (e,)) from None
    lfsflash.unmount()
    if not flash.dead:
        raise Failure("the step did not reach operation %d: its writes differ from run to run" % n)
    if flash.overwrites:
        raise Failure("LittleFS programmed %d bytes that were not erased" % flash.overwrites)
    got, boot_ops = _state_of(work, fresh)
    outcome = _judge(got, before, after, flipped, n if not t else None)
    if also:  # the boot after the cut loses power too, at each of its own writes
        for m in range(boot_ops):
            STATS["double"] += 1
            fresh[:] = work
            cut = lfsflash.Flash(fresh, m)
            lfsflash.mount(cut)
            try:
                boot()
            except Exception as e:
                if not cut.dead:
                    raise Failure("the boot raised %r with the power on" % (e,)) from None
            lfsflash.unmount()
            again, _ops = _state_of(fresh, fresh)
            for part in again:  # a boot cut after it counted itself (boots, a trial boot) did happen
                if again[part] not in (before[part], after[part], also[0][part], also[1][part]):
                    raise Failure("then a cut at operation %d of the boot: %s is %r; before %r; after %r"
                                  % (m, part, again[part], before[part], after[part]))
    if resume:
        fresh[:] = work
        lfsflash.mount(lfsflash.Flash(fresh))
        try:
            _run(resume, boot())
        finally:
            lfsflash.unmount()
    if alive:
        fresh[:] = work
        lfsflash.mount(lfsflash.Flash(fresh))
        check_alive(fresh, n)
    return outcome


def _judge(got, before, after, flipped, n):
    """Each file's state must be the one before the write or the one after it ("before", "after",
    or "mixed" when the files the write changed disagree). n: the cut, for a clean one: a file
    that showed its new state at an earlier cut must not show the old one at this later one."""
    changed = [p for p in after if after[p] != before[p]]
    target = [p for p in changed if p != "boots"] or changed  # every boot counts itself
    old = new = True
    for part in got:
        if got[part] == after[part] and part in changed:
            old = old and part not in target
            if n is not None:
                flipped.setdefault(part, n)
        elif got[part] == before[part]:
            new = new and part not in target
            if n is not None and part in flipped and flipped[part] < n:
                raise Failure("%s went back to its old state after the new one was on flash (cut %d)"
                              % (part, flipped[part]))
        else:
            raise Failure("%s is neither the state before nor after: %r; before %r; after %r"
                          % (part, got[part], before[part], after[part]))
    return "before" if old else "after" if new else "mixed"


# ---- an aged flash ----------------------------------------------------------------------------
AGE_LIMIT = 6000        # saves tried while looking for the superblock pair's last compaction
AGE_QUIET = 400         # saves without an erase of blocks 0/1 after which the root has moved out


def _fact(i):
    return "x" * (i * 37 % 190)  # inline files and files with their own data block, in turn


def _age(image, saves, erased):
    """Save memory.json `saves` times on image, as memory_set does. Returns the index of the last
    save that erased block 0 or 1 (the superblock pair), or None."""
    from wisp.memory import Memory
    lfsflash.mount(lfsflash.Flash(image, erased=erased))
    mem, last = Memory(), None
    for i in range(saves):
        e = erased.get(0, 0) + erased.get(1, 0)
        mem.set("k", _fact(i))
        if erased.get(0, 0) + erased.get(1, 0) != e:
            last = i
        elif last is not None and i - last > AGE_QUIET:
            break
    lfsflash.unmount()
    return last


def aged(base, window):
    """base after as many saves of memory.json as leave `window` of them before LittleFS compacts
    the superblock pair (blocks 0 and 1) for the last time and moves the root directory out of it
    (littlefs relocates a metadata pair after block_cycles=100 compactions; for the superblock pair
    that is its "superblock expansion"). Returns (image, saves made)."""
    probe = bytearray(base)
    last = _age(probe, AGE_LIMIT, {})
    if last is None:
        raise Failure("no compaction of the superblock pair within %d saves" % AGE_LIMIT)
    image = bytearray(base)
    _age(image, last - window, {})
    return image, last - window


def root_moved(image):
    """True when AGE_QUIET further saves no longer erase blocks 0/1: the root left the superblock pair."""
    erased = {}
    _age(bytearray(image), AGE_QUIET, erased)
    return not (erased.get(0) or erased.get(1))


def _save_in_two_parts(name, obj):
    text = json.dumps(obj)
    with open(name + ".json", "w") as f:
        f.write(text[:len(text) // 2])
    with open(name + ".json", "a") as f:
        f.write(text[len(text) // 2:])


def main(argv):
    path, torn, alive, cut_limit, only, double, window = None, (0,), False, None, None, False, 0
    for arg in argv:
        if arg.startswith("--torn="):
            torn = tuple(int(x) for x in arg[7:].split(","))
        elif arg == "--alive":
            alive = True
        elif arg == "--double":
            double = True
        elif arg.startswith("--cut-limit="):
            cut_limit = int(arg[12:])
        elif arg.startswith("--only="):
            only = arg[7:].split(",")
        elif arg.startswith("--aged="):
            window = int(arg[7:])
        elif arg == "--broken-save":  # a save that is not atomic, to show the sweep catches one
            from wisp import store
            store.save = _save_in_two_parts
        elif arg == "--config":
            print(json.dumps(CONFIG))
            return 0
        else:
            path = arg
    base = lfsflash.blank()
    if path == "mkfs":  # a volume MicroPython formatted itself, config.json copied on (wisp deploy)
        lfsflash.mkfs(base)
        lfsflash.mount(lfsflash.Flash(base))
        with open("config.json", "w") as f:
            json.dump(CONFIG, f)
        lfsflash.unmount()
    else:  # the image `wisp image` writes (config.json in it)
        with open(path, "rb") as f:
            f.readinto(base)
    t0 = time.ticks_ms()
    cuts = fails = 0
    if window:
        base, saves = aged(base, window)
        erased = {}
        steps = [tool("memory_set", {"key": "k%d" % (i % 5), "value": _fact(i)}) for i in range(2 * window)]
        c, f, img = sweep("memory-aged", steps, base, torn, alive, cut_limit, double, erased)
        moved = root_moved(img)
        print("AGED saves=%d superblock_compactions=%d root_moved=%d"
              % (saves, erased.get(0, 0) + erased.get(1, 0), moved))
        cuts, fails = c, f + (0 if moved and (erased.get(0) or erased.get(1)) else 1)
    for name, steps in scenarios():
        if window or only and name not in only:
            continue
        c, f, _img = sweep(name, steps, base, torn, alive, cut_limit, double)
        cuts += c
        fails += f
    print("TOTAL cuts=%d failures=%d double=%d resumed=%d alive=%d ms=%d" % (
        cuts, fails, STATS["double"], STATS["resumed"], STATS["alive"], time.ticks_diff(time.ticks_ms(), t0)))
    return fails


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
