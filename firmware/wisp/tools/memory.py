# Memory tools: facts the agent keeps across reboots (dev.memory, a wisp.memory.Memory).
from wisp.memory import show
from wisp.tools import page


def _keys(dev):
    return ", ".join(k for k, _v in dev.memory.items()) or "none"


async def memory_set(dev, args):
    try:
        dev.memory.set(args["key"], args["value"], args.get("_llm", 0))
    except ValueError as e:
        return "Error: %s" % e
    return "ok: remembered %s=%s" % (args["key"], show(args["value"]))


async def memory_get(dev, args):
    value = dev.memory.get(args["key"])
    if value is None:
        return "Error: nothing remembered as '%s'; keys: %s" % (args["key"], _keys(dev))
    return "%s=%s" % (args["key"], show(value))


async def memory_delete(dev, args):
    if not dev.memory.delete(args["key"]):
        return "Error: nothing remembered as '%s'; keys: %s" % (args["key"], _keys(dev))
    return "ok: forgot %s" % args["key"]


async def memory_list(dev, args):
    items = dev.memory.items()
    if not items:
        return "no facts remembered"
    return page("%d facts: " % len(items), items, args.get("skip", 0), lambda kv: "%s=%s" % (kv[0], show(kv[1])))
