# Helpers for the serial REPL: `from wisp import repl as r`, then r.status(), r.ask("..."),
# r.tools(), r.run("gpio_write", pin="porch_light", value=1), r.jobs(), r.mem(), r.log(20),
# r.resume(). They work after Ctrl-C has stopped the agent: each call runs its own short event
# loop. The agent stays stopped (and offline) until r.resume() or Ctrl-D.
import asyncio
import gc

from wisp import log as wlog
from wisp import tools as registry
from wisp import unload

ASK_TIMEOUT_MS = 60000


def _device():
    import wisp.app
    if wisp.app.device is None:
        wisp.app.build()
    return wisp.app.device, wisp.app.agent


def status():
    dev, agent = _device()
    link = dev.link
    print("device %s  fw %s  board %s  boots %d" % (dev.id, __import__("wisp").VERSION, dev.board.name, dev.boots))
    print("broker %s:%d  link %s  connects %d  owed %d" % (
        link.host, link.port, "up" if link.up.is_set() else "down", link.connects, len(dev.outbox.owed)))
    print("pins   " + "  ".join("%s=%d(%s)" % (n, p.read(), p.mode) for n, p in sorted(dev.pins.items())))
    print("agent  inbox %d  replies %d  errors logged %d  free heap %d" % (
        len(agent.inbox), agent.replies, wlog.errors, gc.mem_free()))


def tools():
    dev, _agent = _device()
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
    dev, _agent = _device()
    print(asyncio.run(registry.run(dev, call[0], args)))


def resume():
    """Start the agent again, as at boot (Ctrl-C stops it again)."""
    import wisp.app
    asyncio.new_event_loop()  # drop the tasks Ctrl-C left behind in the old loop
    wisp.app.device = None    # a fresh build: config, pins and state as the board would read them
    wisp.app.start()


def ask(text, timeout_ms=ASK_TIMEOUT_MS):
    """Ask like MQTT would: the fast path answers offline; LLM asks need the broker and a bridge."""
    dev, agent = _device()
    reply = asyncio.run(_ask(dev, agent, text, timeout_ms))
    if reply is None:
        print("no reply within %d s" % (timeout_ms // 1000))
    else:
        print("%s  [%s%s, %d ms]" % (reply["text"], reply["path"], "/" + reply["tier"] if reply.get("tier") else "",
                                      reply["ms"]))


async def _ask(dev, agent, text, timeout_ms):
    got = []
    link_task = None
    if not dev.link.up.is_set():
        link_task = asyncio.create_task(dev.link.run())  # an LLM ask waits for it; the fast path does not
    agent_task = asyncio.create_task(agent.run())
    agent.submit(text, "repl", done=got.append)
    waited = 0
    while not got and waited < timeout_ms:
        await asyncio.sleep_ms(20)
        waited += 20
    agent_task.cancel()
    if link_task:
        await dev.link.stop()
        link_task.cancel()
        dev.link._stop = False  # let a later start() connect again
    return got[0] if got else None


def jobs():
    dev, _agent = _device()
    sched = getattr(dev, "sched", None)
    if sched is None:
        print("no scheduler")
        return
    from wisp.tools.schedule import _action_text, _next_text
    for job in sched.jobs():
        print("%-16s [%s] %s, next %s" % (job["name"], job["spec"], _action_text(job), _next_text(dev, job)))


def mem():
    dev, _agent = _device()
    memory = getattr(dev, "memory", None)
    if memory is None:
        print("no memory")
        return
    for key, value in memory.items():
        print("%s: %s" % (key, value))


def log(n=20):
    """The last n log lines with the device's local time (before NTP: no time yet)."""
    from wisp import civil
    from wisp.logfeed import lines
    from wisp.sched import CLOCK_VALID_AFTER
    dev, _agent = _device()
    for t, text in lines(n):
        when = civil.iso(dev.sched.local_time(None, t)[0])[11:] if t >= CLOCK_VALID_AFTER else "--:--:--"
        print("%s %s" % (when, text))


def export(path="backup.json"):
    """All agent state (facts, routines, jobs, time zone) into one JSON file on the flash, to
    copy off before a reflash: `mpremote cp :backup.json .`"""
    import json

    from wisp import backup
    dev, _agent = _device()
    with open(path, "w") as f:
        json.dump(backup.export(dev), f)
    print("state written to %s" % path)


def restore(path="backup.json"):
    """Bring the state of an export back, all or nothing (nothing changes if any part is bad)."""
    import json

    from wisp import backup
    dev, _agent = _device()
    try:
        with open(path) as f:
            print(backup.restore(dev, json.load(f)))
    except (OSError, ValueError) as e:
        print("Error: nothing restored: %s" % e)
