# The schedule and time tools (wisp/tools): adding, listing and removing jobs, the timezone they
# keep, and the timezone waiting for the clock.
import asyncio

from fakeboard import make_device, manifest
from mpcheck import all_pages, eq
from schedrig import CET, ROUTINE, T0, Clock, Rig

from wisp import civil, tools


def _tool(dev, name, args=None):
    return asyncio.run(tools.run(dev, name, args or {}))


def test_schedule_tools():
    rig = Rig("tooljobs", Clock(T0))
    dev = rig.dev
    dev.sched = rig.s
    eq(_tool(dev, "schedule_add", {"spec": "0 7 * * 1-5", "name": "wake", "routine": "lights_on"}),
        "ok: job 'wake' [0 7 * * 1-5] routine lights_on; next 2026-06-02T07:00 UTC")
    eq(_tool(dev, "schedule_add", {"spec": "in 20m", "prompt": "Is the door still open? Tell me if so."}),
        "ok: job 'job1' [in 20m] prompt 'Is the door still ope...'; next 2026-06-01T12:20 UTC")
    eq(_tool(dev, "schedule_list"), "job1 [in 20m] prompt 'Is the door still ope...', next 2026-06-01T12:20 UTC; "
        "wake [0 7 * * 1-5] routine lights_on, next 2026-06-02T07:00 UTC")
    eq(_tool(dev, "schedule_add", {"spec": "every 5m", "routine": "a", "prompt": "b"})[:26],
       "Error: give either 'routin")
    eq(_tool(dev, "schedule_add", {"spec": "* * * * 9", "routine": "a"}),
        "Error: cron: day-of-week field '9' out of range 0-7")
    eq(_tool(dev, "schedule_add", {"spec": 5, "routine": "a"}), "Error: 'spec' must be a string")
    eq(_tool(dev, "schedule_remove", {"name": "nope"}), "Error: no job named 'nope'; jobs: job1, wake")
    eq(_tool(dev, "schedule_remove", {"name": "wake"}), "ok: removed job 'wake' [0 7 * * 1-5]")
    _tool(dev, "schedule_remove", {"name": "job1"})
    eq(_tool(dev, "schedule_list"), "no jobs")
    names = [t["name"] for t in manifest(dev)["tools"]]
    for name in ("schedule_add", "schedule_list", "schedule_remove", "time_now", "timezone_set"):
        if name not in names:
            raise Exception("%s not in the manifest" % name)


def test_time_tools_set_and_keep_the_timezone():
    rig = Rig("clockjobs", Clock(T0))
    dev = rig.dev
    dev.sched = rig.s
    job = rig.s.add("0 7 * * *", ROUTINE, name="wake")
    eq(civil.iso(job["next"], False), "2026-06-02T07:00")
    eq(_tool(dev, "time_now"), "2026-06-01T12:00:00+00:00 Monday UTC (tz UTC0)")
    eq(_tool(dev, "timezone_set", {"tz": CET}),
        "ok: timezone %s; local time 2026-06-01T14:00:00+02:00 Monday CEST" % CET)
    eq(civil.iso(rig.s.jobs()[0]["next"], False), "2026-06-02T05:00", "cron job follows the new zone")
    eq(_tool(dev, "time_now"), "2026-06-01T14:00:00+02:00 Monday CEST (tz %s)" % CET)
    eq(_tool(dev, "timezone_set", {"tz": "CET"})[:46], "Error: tz: 'CET' needs an offset after the nam")
    eq(dev.config["tz"], CET, "a refused tz changes nothing")
    # a reboot: the new Scheduler reads tz.json into the device config
    again = Rig("clockjobs", Clock(T0))
    eq(again.dev.config["tz"], CET)
    _tool(dev, "timezone_set", {"tz": "<+0530>-5:30"})
    eq(_tool(dev, "time_now")[:25], "2026-06-01T17:30:00+05:30")
    _tool(dev, "timezone_set", {"tz": "EST5"})
    eq(_tool(dev, "time_now"), "2026-06-01T07:00:00-05:00 Monday EST (tz EST5)")
    rig.clock.t = 1000
    eq(_tool(dev, "time_now")[:29], "Error: clock not set yet (no ")


def test_the_timezone_waits_for_the_clock_when_jobs_depend_on_it():
    # a timezone set before NTP retimed the jobs from a 1970 clock: once the clock was set, every
    # 'once' job fired at once and the others logged a run missed in 1970
    a = Rig("tzclock", Clock(T0))
    a.s.add("0 7 * * *", ROUTINE, name="wake", missed="once")
    b = Rig("tzclock", Clock(1000))  # rebooted, no NTP time yet
    b.dev.sched = b.s
    said = _tool(b.dev, "timezone_set", {"tz": CET})
    asyncio.run(b.run_at(T0 + 3600))  # NTP sets the clock
    eq((b.names(), b.logs), ([], ["schedule: clock not set (before 2024-01-01); jobs wait for NTP time"]))
    eq(said, "Error: clock not set yet (no NTP time); set the timezone once the time is known")
    _tool(b.dev, "timezone_set", {"tz": CET})
    eq(civil.iso(b.s.jobs()[0]["next"], False), "2026-06-02T05:00", "07:00 CEST, retimed once the clock is set")
    free = Rig("tzfree", Clock(1000))  # no jobs: nothing to retime, the zone can be set at once
    free.dev.sched = free.s
    eq(_tool(free.dev, "timezone_set", {"tz": CET})[:13], "ok: timezone ")


def test_the_default_zone_needs_no_tz_module():
    # UTC0, the default, is a fixed offset: adding, listing and firing jobs leave the POSIX TZ
    # parser (wisp.tz, ~3.7 KB at the schedule_add peak on a 32-bit port) unloaded
    import sys

    from wisp import unload
    unload("wisp.tz")
    rig = Rig("utc", Clock(T0))
    dev = rig.dev
    dev.sched = rig.s
    eq(_tool(dev, "schedule_add", {"spec": "1 12 * * *", "name": "soon", "routine": "lights_on"}),
       "ok: job 'soon' [1 12 * * *] routine lights_on; next 2026-06-01T12:01 UTC")
    eq(_tool(dev, "schedule_add", {"spec": "at 2026-06-01T12:03", "routine": "lights_on"})[-25:],
       "next 2026-06-01T12:03 UTC")
    eq(_tool(dev, "schedule_add", {"spec": "at 2026-06-01T11:00", "routine": "lights_on"}),
       "Error: 'at 2026-06-01T11:00' is in the past (local time now 2026-06-01T12:00)")
    eq("wisp.tz" in sys.modules, False, "wisp.tz loaded to add a UTC0 job")
    asyncio.run(rig.run_at(T0 + 60, T0 + 180))
    eq(rig.names(), ["soon", "job1"])
    eq(rig.s.jobs()[0]["next"], T0 + 86400 + 60, "the cron job moved to tomorrow")
    eq(rig.s.local_time(), (T0 + 180, 0, "UTC"))
    rig.s.add("0 7 * * *", ROUTINE, name="paris", tz=CET)
    eq("wisp.tz" in sys.modules, True, "a DST zone loads wisp.tz")


def test_a_long_job_list_comes_whole_in_pages():
    # a tool result is cut at limits.MAX_RESULT_TEXT: with six jobs the list ended in "..." after
    # the third, and neither the LLM nor the dashboard could ever see the other three
    rig = Rig("longlist", Clock(T0))
    dev = rig.dev
    dev.sched = rig.s
    names = ["wake_lights", "water_garden", "feed_the_cat", "close_blinds", "night_check", "heating_off"]
    for i, name in enumerate(names):
        rig.s.add("%d %d * * 1-5" % (i * 5, 6 + i), {"prompt": "Check the %s and tell me what changed" % name},
                  name=name)
    seen = "".join(all_pages(lambda name, args: _tool(dev, name, args), "schedule_list"))
    for name in names:
        if seen.count(name + " [") != 1:
            raise Exception("job %s shown %d times in %r" % (name, seen.count(name + " ["), seen))


class _CutAfter:
    """wisp.store's save, cut by a power loss after `n` more whole saves: the next one never happens."""
    def __init__(self, n):
        from wisp import store
        self.store, self.real, self.n = store, store.save, n

    def __enter__(self):
        def save(name, obj):
            if self.n <= 0:
                raise KeyboardInterrupt  # the power is gone: nothing after this runs
            self.n -= 1
            self.real(name, obj)
        self.store.save = save

    def __exit__(self, kind, *rest):
        self.store.save = self.real
        return kind is KeyboardInterrupt


def test_a_cut_between_the_timezone_and_the_jobs_it_retimes_still_boots_on_the_new_zone():
    # timezone_set writes tz.json, then jobs.json with the runs retimed: a cut between the two
    # booted with the jobs timed for the old zone, and a 07:00 job ran at 01:00 local once
    rig = Rig("tzcut", Clock(T0))
    rig.dev.sched = rig.s
    rig.s.add("0 7 * * *", ROUTINE, name="wake", missed="once")
    _tool(rig.dev, "timezone_set", {"tz": CET})
    with _CutAfter(1):  # tz.json is written, jobs.json not
        _tool(rig.dev, "timezone_set", {"tz": "EST5EDT,M3.2.0,M11.1.0"})
    b = Rig("tzcut", Clock(T0 + 60))  # the boot after the cut
    eq(b.dev.config["tz"], "EST5EDT,M3.2.0,M11.1.0")
    asyncio.run(b.run_at(T0 + 60))
    eq(civil.iso(b.s.jobs()[0]["next"], False), "2026-06-02T11:00", "07:00 EDT, not 05:00 UTC (07:00 CEST)")
    eq(b.logs, ["schedule: tzcut.json was timed for the zone %s, the device's is EST5EDT,M3.2.0,M11.1.0; "
                "next runs recomputed" % CET])
    asyncio.run(b.run_at(T0 + 3600 * 10, T0 + 3600 * 23))  # 22:00 UTC..07:00 EDT next day: no run in between
    eq(b.names(), ["wake"])
    eq(Rig("tzcut", Clock(T0 + 3600 * 23)).logs, [], "saved: the next boot recomputes nothing")


def test_jobs_follow_a_zone_changed_in_config_while_the_device_was_off():
    a = Rig("tzconf", Clock(T0))
    a.s.add("0 7 * * *", ROUTINE, name="wake")
    dev = make_device()
    dev.config["tz"] = CET  # config.json's tz, changed by `wisp provision` or `wisp run`
    b = Rig("tzconf", Clock(1000), dev)  # no NTP time yet at this boot: nothing can be retimed
    asyncio.run(b.run_at(1000, T0 + 60))  # until NTP sets the clock
    eq(civil.iso(b.s.jobs()[0]["next"], False), "2026-06-02T05:00", "07:00 CEST")
    eq(b.fired, [])
