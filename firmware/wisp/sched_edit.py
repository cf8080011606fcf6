# Changing the schedule: adding and removing jobs, and checking them. Loaded only while jobs change
# (and at boot, by wisp/sched_setup.py): the runner in wisp/sched.py drops it with the pure modules
# before it sleeps, so between changes it holds no heap.
from wisp import NAME_CHARS, limits, unload
from wisp.sched import CLOCK_VALID_AFTER


def add(s, spec, action, name, tz, missed, llm):
    """Scheduler.add: store a job in scheduler s and return a copy of it, or ValueError."""
    from wisp import cron  # for its field numbers only, which the build inlines (tools/constfold.py)
    now = s.now()
    if now < CLOCK_VALID_AFTER:
        raise ValueError("clock not set yet (no NTP time); try again once the time is known")
    if name is None:
        name = _free_name(s)
    p = validate(name, spec, action, tz, missed)
    unload("wisp.cron")  # the parser: finding the next run (nextrun) needs only its field numbers
    if s._find(name):
        raise ValueError("a job named '%s' already exists; remove it first" % name)
    if len(s._jobs) >= limits.MAX_JOBS:
        raise ValueError("job limit reached (%d jobs); remove one first" % limits.MAX_JOBS)
    job = {"name": name, "spec": spec.strip(), "action": dict(action), "missed": missed}
    if tz:
        job["tz"] = tz
    if llm:
        job["llm"] = 1
    from wisp import nextrun  # after the parser is gone: the two are not in the heap together
    nxt = nextrun.first(p, s._zone(job), now)
    if nxt is None:
        if p[cron.KIND] == cron.AT:
            from wisp import civil
            raise ValueError("'%s' is in the past (local time now %s)"
                             % (job["spec"], civil.iso(s.local_time(job, now)[0], False)))
        raise ValueError("'%s' never fires (no such date)" % job["spec"])
    job["next"] = nxt
    s._jobs.append(job)
    _save_or_undo(s, lambda: s._jobs.remove(job))
    s._specs[name] = p
    s._wake.set()
    return dict(job)


def remove(s, name):
    """Scheduler.remove: the removed job's copy, or ValueError."""
    job = s._find(name)
    if job is None:
        names = ", ".join(j["name"] for j in s.jobs()) or "none"
        raise ValueError("no job named '%s'; jobs: %s" % (name, names))
    s._jobs.remove(job)
    _save_or_undo(s, lambda: s._jobs.append(job))
    s._specs.pop(name, None)
    s._fails.pop(name, None)  # one added again under this name starts its retries afresh
    s._wake.set()
    return dict(job)


def _free_name(s):
    n = 1
    while s._find("job%d" % n):
        n += 1
    return "job%d" % n


def validate(name, spec, action, tz, missed):
    """The parsed spec of a job, or ValueError."""
    from wisp import cron
    if not isinstance(name, str) or not 1 <= len(name) <= limits.MAX_JOB_NAME \
            or any(c not in NAME_CHARS for c in name):
        raise ValueError("job name must be 1-%d characters of a-z A-Z 0-9 _ -" % limits.MAX_JOB_NAME)
    p = cron.parse(spec)
    if not isinstance(action, dict) or len(action) != 1 or not ("routine" in action or "prompt" in action):
        raise ValueError("job action must be {\"routine\": name} or {\"prompt\": text}")
    key = "routine" if "routine" in action else "prompt"
    text = action[key]
    if not isinstance(text, str) or not text.strip() or len(text) > limits.MAX_ACTION_LEN:
        raise ValueError("job %s must be text of 1-%d characters" % (key, limits.MAX_ACTION_LEN))
    if tz is not None:
        from wisp import tz as posix_tz
        posix_tz.parse(tz)
    if missed not in ("skip", "once"):
        raise ValueError("missed must be 'skip' or 'once', not %r" % (missed,))
    return p


def _save_or_undo(s, undo):
    try:
        s._save()
    except (OSError, TypeError) as e:
        undo()
        raise ValueError("could not save jobs to flash: %s" % (e,))
