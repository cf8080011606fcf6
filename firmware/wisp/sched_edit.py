# Changing the schedule: adding and removing jobs, checking them, loading jobs.json at boot, and
# the device timezone's one writer (set_device_tz). Loaded only while jobs change (and at boot):
# the runner in wisp/sched.py drops it with the pure modules before it sleeps, so between changes
# it holds no heap.
import os

from wisp import NAME_CHARS, limits, store
from wisp.sched import CLOCK_VALID_AFTER, TZ_STORE


def load_tz(config, log):
    """Put the saved device timezone (tz.json) into config["tz"] and check it; UTC0 when bad."""
    saved = store.load(TZ_STORE, None, log)
    if isinstance(saved, dict) and isinstance(saved.get("tz"), str):
        config["tz"] = saved["tz"]
    elif saved is not None:
        log("config error: %s.json holds no {\"tz\": ...}; ignoring it" % TZ_STORE)
    if config.get("tz", "UTC0") == "UTC0":
        return  # the default needs no check (and no tz module)
    from wisp import tz as posix_tz
    try:
        posix_tz.parse(config["tz"])
    except ValueError as e:
        log("config error: %s; using UTC0" % e)
        config["tz"] = "UTC0"


def set_device_tz(dev, zone):
    """The one writer of the device timezone (timezone_set, backup restore): zone, a POSIX TZ
    string, is checked, saved in tz.json and set in dev.config; None removes it (UTC0 again).
    The scheduler, when there is one, retimes its jobs. ValueError when bad or not saved."""
    if zone is None:  # e.g. a backup from a device that never had one set
        try:
            os.remove(TZ_STORE + ".json")
        except OSError:
            pass
        dev.config.pop("tz", None)
    else:
        from wisp import tz as posix_tz
        posix_tz.parse(zone)
        try:
            store.save(TZ_STORE, {"tz": zone})
        except OSError as e:
            raise ValueError("could not save the timezone to flash: %s" % (e,))
        dev.config["tz"] = zone
    scheduler = getattr(dev, "sched", None)
    if scheduler is not None:
        scheduler.retime()  # cron and `at` jobs follow the new wall clock


def add(s, spec, action, name, tz, missed, llm):
    """Scheduler.add: store a job in scheduler s and return a copy of it, or ValueError."""
    from wisp import cron, nextrun
    now = s.now()
    if now < CLOCK_VALID_AFTER:
        raise ValueError("clock not set yet (no NTP time); try again once the time is known")
    if name is None:
        name = _free_name(s)
    p = validate(name, spec, action, tz, missed)
    if s._find(name):
        raise ValueError("a job named '%s' already exists; remove it first" % name)
    if len(s._jobs) >= limits.MAX_JOBS:
        raise ValueError("job limit reached (%d jobs); remove one first" % limits.MAX_JOBS)
    job = {"name": name, "spec": spec.strip(), "action": dict(action), "missed": missed}
    if tz:
        job["tz"] = tz
    if llm:
        job["llm"] = 1
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


def load(s):
    """The jobs of s.path into scheduler s, at boot; bad entries are logged and the file kept
    aside as <name>.bad, the good ones run."""
    data = store.load(s._store, None, s._log)  # an unreadable file is kept as <name>.bad
    if data is None:
        return
    entries = data.get("jobs") if isinstance(data, dict) else None
    problems = [] if isinstance(entries, list) else ["no job list"]
    for e in entries or ():
        try:
            if not isinstance(e, dict):
                raise ValueError("job entry is not an object")
            p = validate(e.get("name"), e.get("spec"), e.get("action"), e.get("tz"), e.get("missed"))
            if not isinstance(e.get("next"), int) or isinstance(e.get("next"), bool):
                raise ValueError("job '%s' has no next run time" % e["name"])
            if s._find(e["name"]) or len(s._jobs) >= limits.MAX_JOBS:
                raise ValueError("job '%s' is a duplicate or over the job limit" % e["name"])
        except ValueError as x:
            problems.append(str(x))
            continue
        s._jobs.append(e)
        s._specs[e["name"]] = p
    if problems:  # keep the whole file for the user, go on with the good jobs
        bad = s._store + ".bad"
        for why in problems:
            s._log("schedule error: %s: %s" % (s.path, why))
        try:
            os.rename(s.path, bad)
            s._log("schedule: kept %s aside as %s; loaded %d good jobs" % (s.path, bad, len(s._jobs)))
        except OSError as e:
            s._log("schedule error: could not keep %s aside: %s" % (s.path, e))
        s._save_logged()
