# Power cuts inside LittleFS, on the ESP32's flash geometry (lfsflash.Flash): every write the
# firmware makes is cut at each of its program/erase operations in turn, and the flash it leaves
# must mount as a board's _boot.py mounts it, boot (wispboot, wisp.app.build, memory, routines:
# the firmware's own loaders) without raising or logging an error, and hold, file by file,
# either the state before that write or the state after it; the device must then still save.
# Runs on MicroPython: `micropython lfssweep.py IMAGE [options]` (test_lfs_power_cut.py and
# bench/lfs_power_cut.py drive it). Prints one "SWEEP ..." line per scenario, "FAIL ..." lines.
import asyncio
import json
import sys
import time

import lfsflash
from lfsdevice import CONFIG, Failure, boot, scenarios, slot_error, state, tool

STATS = {"double": 0, "resumed": 0, "alive": 0}  # boots cut after a cut; updates resumed; saves after a cut


# ---- the sweep ---------------------------------------------------------------------------------
def _run(step, dev):
    return asyncio.run(step(dev))


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
            if _run(resume, boot()):
                STATS["resumed"] += 1
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
