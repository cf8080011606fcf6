# Routine tools: the LLM defines named step lists once; the device runs them offline (dev.routines).
from wisp.tools import page


async def routine_define(dev, args):
    try:
        dev.routines.define(args["name"], args["steps"], args.get("_llm", 0))
    except ValueError as e:
        return "Error: routine '%s' not saved: %s" % (args["name"], e)
    return "ok: routine '%s' saved (%d steps)" % (args["name"], len(args["steps"]))


async def routine_run(dev, args):
    return await dev.routines.run(args["name"], "tool", args.get("_llm", 0))


async def routine_list(dev, args):
    names = dev.routines.list()
    if not names:
        return "no routines"
    return page("%d routines: " % len(names), names, args.get("skip", 0),
                lambda n: "%s (%d steps)" % (n, len(dev.routines.get(n))))


async def routine_delete(dev, args):
    if not dev.routines.delete(args["name"]):
        return "Error: no routine '%s'; routines: %s" % (args["name"], ", ".join(dev.routines.list()) or "none")
    return "ok: routine '%s' deleted" % args["name"]
