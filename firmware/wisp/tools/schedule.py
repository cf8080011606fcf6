# Schedule tools: add, list and remove jobs of the device's scheduler (dev.sched, wisp/sched.py).
from wisp.tools import page


def _next_text(dev, job):
    from wisp import civil  # here, not at the top: adding a job parses its spec without it
    local, _off, abbr = dev.sched.local_time(job, job["next"])
    return "%s %s" % (civil.iso(local, False), abbr)


def _action_text(job):
    action = job["action"]
    if "routine" in action:
        return "routine " + action["routine"]
    text = action["prompt"]
    return "prompt '%s'" % (text if len(text) <= 24 else text[:21] + "...")


async def schedule_add(dev, args):
    routine, prompt = args.get("routine"), args.get("prompt")
    if (routine is None) == (prompt is None):
        return "Error: give either 'routine' (runs offline) or 'prompt' (asks the LLM), not both or neither"
    action = {"routine": routine} if routine is not None else {"prompt": prompt}
    try:
        job = dev.sched.add(args["spec"], action, args.get("name"), args.get("tz"), args.get("missed", "skip"),
                           args.get("_llm", 0))
    except ValueError as e:
        return "Error: %s" % e
    return "ok: job '%s' [%s] %s; next %s" % (job["name"], job["spec"], _action_text(job), _next_text(dev, job))


async def schedule_list(dev, args):
    jobs = dev.sched.jobs()
    if not jobs:
        return "no jobs"
    return page("", jobs, args.get("skip", 0), lambda j: "%s [%s] %s, next %s" % (
        j["name"], j["spec"], _action_text(j), _next_text(dev, j)))


async def schedule_remove(dev, args):
    try:
        job = dev.sched.remove(args["name"])
    except ValueError as e:
        return "Error: %s" % e
    return "ok: removed job '%s' [%s]" % (job["name"], job["spec"])
