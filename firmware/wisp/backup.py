# All of the agent's state (facts, routines, jobs, timezone) as one JSON document, so a reflash
# does not wipe its memory. restore() checks everything first and changes nothing on a bad document.
from wisp import memory, routines

VERSION = 1
JOB_OPTIONS = ("name", "tz", "missed")  # optional keyword arguments of Scheduler.add()


def _sched(dev):
    return getattr(dev, "sched", None)


def _tz(dev):
    sched = _sched(dev)
    tz = getattr(sched, "tz", None) if sched is not None else None
    if tz is None and isinstance(getattr(dev, "config", None), dict):
        tz = dev.config.get("tz")
    return tz


def export(dev):
    """{"v": 1, "facts": [[key, value], ...], "routines": {name: steps}, "jobs": [...], "tz": ...}"""
    mem, rts, sched = getattr(dev, "memory", None), getattr(dev, "routines", None), _sched(dev)
    return {"v": VERSION,
            "facts": mem.pairs() if mem is not None else [],
            "routines": rts.all() if rts is not None else {},
            "jobs": list(sched.jobs()) if sched is not None else [],
            "tz": _tz(dev)}


def _check_jobs(jobs):
    if not isinstance(jobs, list):
        return "jobs must be a list"
    try:
        from wisp import cron
    except ImportError:
        cron = None
    for i, job in enumerate(jobs):
        if not isinstance(job, dict) or not isinstance(job.get("spec"), str) or "action" not in job:
            return "job %d must be an object with a \"spec\" and an \"action\"" % (i + 1)
        if cron is not None:
            try:
                cron.parse(job["spec"])
            except ValueError as e:
                return "job %d: %s" % (i + 1, e)
    return None


def check(dev, doc):
    """Error text for a backup document that cannot be restored on this device, or None."""
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        return "a backup is a JSON object with \"v\": %d" % VERSION
    err = memory.check_pairs(doc.get("facts", []))
    if err:
        return "facts: " + err
    err = routines.check_all(dev, doc.get("routines", {}))
    if err:
        return "routines: " + err
    jobs = doc.get("jobs", [])
    if jobs and _sched(dev) is None:
        return "this device has no scheduler for the %d jobs" % len(jobs)
    err = _check_jobs(jobs)
    if err:
        return "jobs: " + err
    tz = doc.get("tz")
    if tz is not None:
        if not isinstance(tz, str):
            return "tz must be a POSIX TZ string"
        try:
            from wisp import tz as tz_mod
            tz_mod.parse(tz)
        except ImportError:
            pass
        except ValueError as e:
            return str(e)
    return None


def _remove_job(sched, job):
    remove = getattr(sched, "delete", None) or getattr(sched, "remove", None)
    if remove is None:
        raise ValueError("the scheduler cannot remove jobs")
    remove(job.get("name"))


def _set_jobs(sched, jobs):
    for job in list(sched.jobs()):
        _remove_job(sched, job)
    for job in jobs:
        opts = {}
        for k in JOB_OPTIONS:
            if job.get(k) is not None:
                opts[k] = job[k]
        sched.add(job["spec"], job["action"], **opts)


def _set_tz(dev, tz):
    sched = _sched(dev)
    if sched is not None and hasattr(sched, "set_tz"):
        sched.set_tz(tz)
    elif sched is not None and hasattr(sched, "tz"):
        sched.tz = tz
    elif isinstance(getattr(dev, "config", None), dict):
        dev.config["tz"] = tz


def restore(dev, doc):
    """Replace all state with a backup's; a short summary. Raises ValueError and changes nothing if
    the document is not valid here (or a part fails to apply: the parts applied are put back)."""
    err = check(dev, doc)
    if err:
        raise ValueError(err)
    facts, rts = doc.get("facts", []), doc.get("routines", {})
    jobs, sched = doc.get("jobs", []), _sched(dev)
    undo = []
    try:
        # routines before jobs: a scheduler may check that a job's routine exists
        old_rts = dev.routines.all()
        dev.routines.replace(rts)
        undo.append(lambda: dev.routines.replace(old_rts))
        if sched is not None:
            old_jobs, old_tz = list(sched.jobs()), _tz(dev)
            if "tz" in doc:
                _set_tz(dev, doc["tz"])
                undo.append(lambda: _set_tz(dev, old_tz))
            undo.append(lambda: _set_jobs(sched, old_jobs))  # before: a half-done swap is undone too
            _set_jobs(sched, jobs)
        elif "tz" in doc:
            _set_tz(dev, doc["tz"])
        dev.memory.replace(facts)
    except Exception as e:  # the scheduler's own checks, or flash full
        for step in reversed(undo):
            try:
                step()
            except Exception:
                pass
        raise ValueError("restore failed, nothing changed: %s" % e)
    return "ok: restored %d facts, %d routines, %d jobs" % (len(facts), len(rts), len(jobs))
