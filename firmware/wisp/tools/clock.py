# Time tools: the local time in the device's timezone, and setting that timezone (POSIX TZ string,
# saved to tz.json by wisp/sched_setup.py, which also loads it at boot).
from wisp import civil, sched
from wisp import tz as posix_tz

_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _now(dev):
    s = getattr(dev, "sched", None)
    return s.now() if s else sched.unix_time()


def _local_text(utc, zone):
    utc = int(utc)
    off, abbr = posix_tz.offset(utc, zone)
    local = utc + off
    sign = "-" if off < 0 else "+"
    return "%s%s%02d:%02d %s %s" % (civil.iso(local), sign, abs(off) // 3600, abs(off) % 3600 // 60,
                                   _WEEKDAYS[civil.fields(local)[6]], abbr)


async def time_now(dev, args):
    utc = _now(dev)
    zone = dev.config.get("tz", "UTC0")
    if utc < sched.CLOCK_VALID_AFTER:
        return "Error: clock not set yet (no NTP time); device clock reads %s UTC" % civil.iso(utc)
    return "%s (tz %s)" % (_local_text(utc, zone), zone)


async def timezone_set(dev, args):
    zone = args["tz"].strip()
    if args.get("_llm") and zone != dev.config.get("tz"):
        # the zone times the owner's schedules: the LLM moving it could fire them when it likes
        from wisp import confirm
        return confirm.hold(dev, ("timezone_set", {"tz": zone}), args["_llm"], "a timezone change", "changed")
    try:
        from wisp import sched_setup
        sched_setup.set_device_tz(dev, zone)
    except ValueError as e:
        return "Error: %s" % e
    return "ok: timezone %s; local time %s" % (zone, _local_text(_now(dev), zone))
