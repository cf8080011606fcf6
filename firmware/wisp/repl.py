# Helpers for the serial REPL: `from wisp import repl as r`, then r.status(), r.ask("..."),
# r.tools(), r.run("gpio_write", pin="porch_light", value=1), r.jobs(), r.mem(), r.log(20),
# r.resume(). They work after Ctrl-C has stopped the agent: each call runs its own short event
# loop, and nothing of it runs on. The agent stays stopped (and offline) until r.resume() or Ctrl-D.
import asyncio
import gc

from wisp import app, limits, unload
from wisp import log as wlog
from wisp import tools as registry

ASK_TIMEOUT_MS = 60000


def stopped():
    """Ctrl-C stopped the agent (wisp.app.start): the user gets the prompt, the device is offline."""
    halt()
    dev = app.device
    if dev is not None and dev.board.wdt_hold():
        wlog.log("watchdog: it cannot be stopped; a timer feeds it while at the REPL")
    wlog.log("stopped by user: offline until Ctrl-D (soft reset) or r.resume(); "
             "`from wisp import repl as r` then r.status()")


def halt():
    """Where Ctrl-C, and each helper's loop however it ends, leave the device: offline, with no task
    of that loop able to run again. A fresh loop drops the tasks queued to run; a task waiting on an
    event would wake when a later helper sets it (a request queued, a job added, the link up), so
    those events are new ones, and the work under way (a request, an announce) is dropped. An
    output's timed off (a pulse's end, its max_on_s) is such a task too: the output goes off now."""
    asyncio.new_event_loop()
    dev, agent = app.device, app.agent
    if dev is None:
        return
    for pin in dev.pins.values():
        if pin._off_task:
            pin._off_task = None  # never cancelled: that task belongs to the loop just dropped
            pin._apply(0)
            wlog.log("%s off: the agent is stopped, nothing would switch it off later" % pin.name)
    dev.link.abort()  # the broker announces us offline now (our will), not a keepalive later
    dev.announcing = dev.busy = dev.outbox._answering = False  # their tasks are gone
    dev.spawned = 0
    if agent is not None:
        agent._wake, dev.sched._wake = asyncio.Event(), asyncio.Event()
        agent.inbox, agent.conv = [], None


def _run(coro):
    try:
        return asyncio.run(_settled(coro))
    finally:  # Ctrl-C in it too
        halt()


async def _settled(coro):
    """coro's result once the timed offs it started are done, up to the longest pulse: halt()
    switches off what is still on then (an output's max_on_s beyond that)."""
    result = await coro
    waited = 0
    while waited < limits.MAX_PULSE_MS and any(p._off_task for p in app.device.pins.values()):
        await asyncio.sleep_ms(50)
        waited += 50
    return result


def status():
    dev, agent = app.build()
    link = dev.link
    print("device %s  fw %s  board %s  boots %d" % (dev.id, __import__("wisp").VERSION, dev.board.name, dev.boots))
    print("broker %s:%d  link %s  connects %d  owed %d" % (
        link.host, link.port, "up" if link.up.is_set() else "down", link.connects, len(dev.outbox.owed)))
    print("pins   " + "  ".join("%s=%d(%s)" % (n, p.read(), p.mode) for n, p in sorted(dev.pins.items())))
    print("agent  inbox %d  replies %d  errors logged %d  free heap %d" % (
        len(agent.inbox), agent.replies, wlog.errors, gc.mem_free()))


def tools():
    dev, _agent = app.build()
    from wisp.tools import manifest  # one-shot: dropped again below
    for t in manifest.schemas(dev):
        params = t["params"]["properties"]
        req = t["params"]["required"]
        shown = ", ".join(("%s" if p in req else "[%s]") % p for p in params)
        print("%-16s(%s)  %s" % (t["name"], shown, t["desc"]))
    del manifest
    unload("wisp.tools.manifest")


def run(*call, **args):
    """r.run("gpio_write", pin="porch_light", value=1); the tool's own `name` argument works too
    (r.run("routine_run", name="evening")), and so does a dict: r.run("x", {"name": "y"})."""
    if not call or not isinstance(call[0], str) or len(call) > 2:
        print('usage: r.run("tool_name", arg=value, ...) or r.run("tool_name", {"arg": value})')
        return
    if len(call) == 2:
        args.update(call[1])
    dev, _agent = app.build()
    result = _run(registry.run(dev, call[0], args))
    print(result)
    if call[0] == "system_reboot" and result.startswith("ok"):
        dev.board.reset()  # its delayed reset was a task of the helper's loop, gone with it


def resume():
    """Start the agent again, as at boot (Ctrl-C stops it again)."""
    asyncio.new_event_loop()  # drop the tasks Ctrl-C left behind in the old loop
    app.device = None         # a fresh build: config, pins and state as the board would read them
    app.start()


def ask(text, timeout_ms=ASK_TIMEOUT_MS):
    """Ask like MQTT would: the fast path answers offline; LLM asks need the broker and a bridge."""
    if not isinstance(text, str) or not text.strip() or not isinstance(timeout_ms, int) or timeout_ms < 1:
        print('usage: r.ask("turn on the porch light"), or r.ask("...", timeout_ms)')
        return
    dev, agent = app.build()
    reply = _run(_ask(dev, agent, text, timeout_ms))
    if reply is None:
        print("no reply within %d s" % (timeout_ms // 1000))
    else:
        print("%s  [%s%s, %d ms]" % (reply["text"], reply["path"], "/" + reply["tier"] if reply.get("tier") else "",
                                      reply["ms"]))


async def _ask(dev, agent, text, timeout_ms):
    got = []
    asyncio.create_task(dev.link.run())  # an LLM ask waits for the link; the fast path does not
    asyncio.create_task(agent.run())
    agent.submit(text, "repl", done=got.append)
    waited = 0
    while not got and waited < timeout_ms:
        await asyncio.sleep_ms(20)
        waited += 20
    return got[0] if got else None


def jobs():
    dev, _agent = app.build()
    sched = getattr(dev, "sched", None)
    if sched is None:
        print("no scheduler")
        return
    from wisp.tools.schedule import _action_text, _next_text
    for job in sched.jobs():
        print("%-16s [%s] %s, next %s" % (job["name"], job["spec"], _action_text(job), _next_text(dev, job)))


def mem():
    dev, _agent = app.build()
    memory = getattr(dev, "memory", None)
    if memory is None:
        print("no memory")
        return
    for key, value in memory.items():
        print("%s: %s" % (key, value))


def log(n=20):
    """The last n log lines with the device's local time (before NTP: no time yet)."""
    if not isinstance(n, int) or n < 1:
        print("usage: r.log() or r.log(50): the last n lines")
        return
    from wisp import civil
    from wisp.logfeed import lines
    from wisp.sched import CLOCK_VALID_AFTER
    dev, _agent = app.build()
    for t, text in lines(n):
        when = civil.iso(dev.sched.local_time(None, t)[0])[11:] if t >= CLOCK_VALID_AFTER else "--:--:--"
        print("%s %s" % (when, text))


def export(path="backup.json"):
    """All agent state (facts, routines, jobs, time zone) into one JSON file on the flash, to
    copy off before a reflash: `mpremote connect PORT resume cp :backup.json .`"""
    if not _json_path(path):
        return
    from wisp import backup, store
    dev, _agent = app.build()
    try:
        store.save(path[:-5], backup.export(dev))  # whole or not at all: an earlier export stays
    except (OSError, MemoryError) as e:
        print("Error: nothing written: %s" % _why(e))
        return
    print("state written to %s" % path)


def _why(e):
    return str(e) or type(e).__name__  # a MemoryError says nothing of itself


def _json_path(path):
    if isinstance(path, str) and len(path) > 5 and path.endswith(".json"):
        return True
    print('usage: a file name ending in .json, as r.export("backup.json")')
    return False


def restore(path="backup.json"):
    """Bring the state of an export back, all or nothing (nothing changes if any part is bad)."""
    if not _json_path(path):
        return
    import json

    from wisp import backup
    dev, _agent = app.build()
    try:
        with open(path) as f:
            print(backup.restore(dev, json.load(f)))
    except (OSError, ValueError, MemoryError) as e:
        print("Error: nothing restored: %s" % _why(e))
