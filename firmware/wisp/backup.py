# All of the agent's state (facts, routines, jobs, timezone) as one JSON document, so a reflash
# does not wipe its memory. restore() checks everything first and changes nothing on a bad document.
from wisp import memory, routine_check

VERSION = 1
JOB_OPTIONS = ("name", "tz", "missed", "llm")  # optional keyword arguments of Scheduler.add()


def _sched(dev):
    return getattr(dev, "sched", None)


def _tz(dev):
    config = getattr(dev, "config", None)
    return config.get("tz") if isinstance(config, dict) else None


def export(dev):
    """{"v": 1, "facts": [[key, value], ...], "routines": {name: steps}, "jobs": [...], "tz": ...,
    "llm_facts": [key, ...], "llm_routines": [name, ...]}: which ones the LLM wrote (jobs say it
    themselves) stay the LLM's after a restore, so they still cannot act for the owner (confirm.py)."""
    mem, rts, sched = getattr(dev, "memory", None), getattr(dev, "routines", None), _sched(dev)
    return {"v": VERSION,
            "facts": mem.pairs() if mem is not None else [],
            "llm_facts": mem.llm_keys() if mem is not None else [],
            "routines": rts.all() if rts is not None else {},
            "llm_routines": rts.llm_names() if rts is not None else [],
            "jobs": list(sched.jobs()) if sched is not None else [],
            "tz": _tz(dev)}


def _check_jobs(jobs):
    """Shape and spec of each job; the scheduler's add() checks the rest when applied. A job may name a
    routine the device does not have, as the scheduler allows (the run logs the missing routine), so a
    backup of such a device restores."""
    from wisp import cron
    if not isinstance(jobs, list):
        return "jobs must be a list"
    for i, job in enumerate(jobs):
        if not isinstance(job, dict) or not isinstance(job.get("spec"), str) or "action" not in job:
            return "job %d must be an object with a \"spec\" and an \"action\"" % (i + 1)
        try:
            cron.parse(job["spec"])
        except ValueError as e:
            return "job %d: %s" % (i + 1, e)
    return None


def check(dev, doc):
    """Error text for a backup document that cannot be restored on this device, or None."""
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        return "a backup is a JSON object with \"v\": %d" % VERSION
    for key in ("llm_facts", "llm_routines"):
        names = doc.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return "%s must be a list of names" % key
    err = memory.check_pairs(doc.get("facts", []))  # an absent section is left as it is
    if err:
        return "facts: " + err
    err = routine_check.check_all(dev, doc.get("routines", {}))
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
        from wisp import tz as posix_tz
        if not isinstance(tz, str):
            return "tz must be a POSIX TZ string like 'CET-1CEST,M3.5.0,M10.5.0/3'"
        try:
            posix_tz.parse(tz)
        except ValueError as e:
            return str(e)
    return None


def _set_jobs(sched, jobs):
    """Replace every job; next runs are computed afresh ("in 5m" counts from now)."""
    for job in sched.jobs():
        sched.remove(job["name"])
    for job in jobs:
        opts = {}
        for k in JOB_OPTIONS:
            if job.get(k) is not None:
                opts[k] = job[k]
        try:
            sched.add(job["spec"], job["action"], **opts)
        except ValueError as e:
            raise ValueError("job '%s': %s" % (job.get("name", job["spec"]), e))


def _set_tz(dev, tz):
    from wisp import sched_setup
    sched_setup.set_device_tz(dev, tz)  # None: the backup came from a device that never had one set


def restore(dev, doc):
    """Replace the state in each section the document holds (an absent section is left alone);
    a short summary. Raises ValueError and changes nothing if the document is not valid here,
    or if a part fails to apply (the parts already applied are put back)."""
    err = check(dev, doc)
    if err:
        raise ValueError(err)
    sched, undo, done = _sched(dev), [], []
    try:
        if "routines" in doc:  # before jobs, which may name them
            old_rts, old_llm = dev.routines.all(), dev.routines.llm_names()
            dev.routines.replace(doc["routines"], doc.get("llm_routines", ()))
            undo.append(lambda: dev.routines.replace(old_rts, old_llm))
            done.append("%d routines" % len(doc["routines"]))
        if "tz" in doc:
            old_tz = _tz(dev)
            undo.append(lambda: _set_tz(dev, old_tz))
            _set_tz(dev, doc["tz"])
            done.append("tz %s" % doc["tz"])
        if "jobs" in doc and sched is not None:
            old_jobs = sched.jobs()
            undo.append(lambda: _set_jobs(sched, old_jobs))  # before: a half-done swap is undone too
            _set_jobs(sched, doc["jobs"])
            done.append("%d jobs" % len(doc["jobs"]))
        if "facts" in doc:
            dev.memory.replace(doc["facts"], doc.get("llm_facts", ()))  # last: it undoes itself when it fails
            done.append("%d facts" % len(doc["facts"]))
    except Exception as e:  # the scheduler's own checks (clock not set, date past), or flash full
        for step in reversed(undo):
            try:
                step()
            except Exception:
                pass
        raise ValueError("restore failed, nothing changed: %s" % e)
    return "ok: restored " + (", ".join(done) or "nothing (empty backup)")
