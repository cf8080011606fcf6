# The device whose flash lfssweep.py cuts: one boot as a board makes it (boot.py, wispboot, wisp.app
# build, memory and routines loaded), the state it then holds file by file, and the writes the
# firmware makes (tools the LLM or a user call, the boot counter, the replay floor, pin levels, Home
# Assistant topics, an OTA update and its trial boots), as the scenarios the sweep runs.
import asyncio
import hashlib
import json
import struct
import sys


class Failure(Exception):
    """What a power cut broke, in words (lfssweep.py reports it)."""


KEY = "5e" * 32                         # the device's signing key (config.json "key")
PINS = {"porch_light": {"pin": 25, "mode": "out", "restore": "last"},
        "fan": {"pin": 26, "mode": "out"}}
CONFIG = {"id": "t1", "broker": {"host": "127.0.0.1", "port": 1}, "pins": PINS, "key": KEY}
JOB_STATE = ("name", "spec", "action", "missed", "tz", "llm")   # "next" depends on the clock


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
            return True  # resumed: counted by the sweep
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
