# The schedule at boot and the device timezone: loading jobs.json and tz.json, and set_device_tz,
# the timezone's one writer (timezone_set, backup restore). Apart from wisp/sched_edit.py so that
# adding a job, the scheduler's largest moment, does not carry them: loaded at boot and for a
# timezone change, then dropped with the scheduler's other pure modules.
import os

from wisp import limits, sched_edit, store
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
    scheduler = getattr(dev, "sched", None)
    if scheduler is not None and scheduler._jobs and scheduler.now() < CLOCK_VALID_AFTER:
        # the jobs' next runs are counted from now: from an unset clock they all look missed
        raise ValueError("clock not set yet (no NTP time); set the timezone once the time is known")
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
    if scheduler is not None:
        scheduler.retime()  # cron and `at` jobs follow the new wall clock


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
            p = sched_edit.validate(e.get("name"), e.get("spec"), e.get("action"), e.get("tz"), e.get("missed"))
            if not isinstance(e.get("next"), int) or isinstance(e.get("next"), bool):
                raise ValueError("job '%s' has no next run time" % e["name"])
            if s._find(e["name"]) or len(s._jobs) >= limits.MAX_JOBS:
                raise ValueError("job '%s' is a duplicate or over the job limit" % e["name"])
        except ValueError as x:
            problems.append(str(x))
            continue
        s._jobs.append(e)
        s._specs[e["name"]] = p
    zone = data.get("tz") if isinstance(data, dict) else None  # None: saved before files named it
    if s._jobs and zone is not None and zone != s.dev.config.get("tz", "UTC0"):
        s._stale = zone
    if problems:  # keep the whole file for the user, go on with the good jobs
        for why in problems:
            s._log("schedule error: %s: %s" % (s.path, why))
        store.set_aside(s._store, data, s._log)
        s._save_logged()
