# The schedule runner (wisp/sched.py): persistence across restarts, missed-run policies after an
# outage, one-shots, limits, a failing job, real-time firing, the device timezone. The tools:
# mp_test_sched_tools.py.
import asyncio
import json

from fakeboard import make_device
from mpcheck import eq, raises
from schedrig import CET, ROUTINE, T0, Clock, Rig, exists

from wisp import civil, limits
from wisp.sched import Scheduler


def test_jobs_survive_a_restart():
    a = Rig("persist", Clock(T0))
    a.s.add("0 7 * * 1-5", ROUTINE, name="wake")
    a.s.add("every 10m", {"prompt": "check the greenhouse"}, name="green", missed="once")
    a.s.add("at 2026-06-03T18:00", ROUTINE, tz=CET)
    b = Rig("persist", Clock(T0 + 5))  # a new Scheduler on the same flash root: a reboot
    eq(b.s.jobs(), a.s.jobs(), "jobs after restart")
    eq([(j["name"], j["spec"], civil.iso(j["next"], False)) for j in b.s.jobs()],
        [("green", "every 10m", "2026-06-01T12:10"), ("wake", "0 7 * * 1-5", "2026-06-02T07:00"),
         ("job1", "at 2026-06-03T18:00", "2026-06-03T16:00")])
    eq(b.s.jobs()[0]["action"], {"prompt": "check the greenhouse"})
    eq(b.logs, [], "restart logs")


def test_missed_runs_skip_or_run_once_after_an_outage():
    a = Rig("missed", Clock(T0))
    a.s.add("0 7 * * *", ROUTINE, name="daily_skip")
    a.s.add("0 7 * * *", ROUTINE, name="daily_once", missed="once")
    a.s.add("every 1h", ROUTINE, name="hourly_once", missed="once")
    # the device was off from Monday noon to Friday 09:00: four 07:00 runs and ~93 hourly runs missed
    back = civil.seconds(2026, 6, 5, 9, 0)
    b = Rig("missed", Clock(back))
    asyncio.run(b.run_at(back))
    eq(sorted(b.names()), ["daily_once", "hourly_once"], "fired once each")
    if b.fired[0]["late_s"] < 3 * 86400:
        raise Exception("late_s should tell how late the run is: %r" % b.fired[0])
    if not b.logged("job 'daily_skip' missed its run at 2026-06-02T07:00:00 UTC"):
        raise Exception(b.logs)
    nexts = {j["name"]: civil.iso(j["next"], False) for j in b.s.jobs()}
    eq(nexts, {"daily_skip": "2026-06-06T07:00", "daily_once": "2026-06-06T07:00",
                "hourly_once": "2026-06-05T10:00"}, "next runs continue from now")
    c = Rig("missed", Clock(back + 60))  # and that was saved: no second catch-up after another reboot
    asyncio.run(c.run_at(back + 60))
    eq(c.names(), [], "fired again after a second reboot")


def test_a_job_every_minute_does_not_fire_again_after_a_reboot_within_its_minute():
    # the runner wakes a little after 12:01:00 and fires the job; the device reboots at 12:01:30
    # (a power cut, or a reboot the user asked for): that run must be on flash already
    a = Rig("minutely", Clock(T0 + 20))
    a.s.add("* * * * *", ROUTINE, name="tick")
    asyncio.run(a.run_at(T0 + 61))
    eq(a.names(), ["tick"])
    b = Rig("minutely", Clock(T0 + 90))
    asyncio.run(b.run_at(T0 + 90))
    eq(b.names(), [], "fired again after the reboot")


def test_a_slightly_late_run_is_not_missed():
    a = Rig("late", Clock(T0))
    job = a.s.add("0 13 * * *", ROUTINE, name="lunch")  # skip policy
    asyncio.run(a.run_at(job["next"] + limits.MISSED_GRACE_S - 10))
    eq(a.names(), ["lunch"])


def test_a_clock_stepped_back_reruns_no_cron_job_unless_by_hours():
    # NTP correcting a clock that ran ahead: the daily 13:00 job ran, the clock goes back from
    # 13:05 to 12:55; it must not run again at 13:00 (Vixie cron's rule for steps under 3 h)
    t13 = civil.seconds(2026, 6, 1, 13, 0)
    a = Rig("stepback", Clock(t13 - 60))
    a.s.add("0 13 * * *", ROUTINE, name="feed_fish")
    a.s.add("every 30m", ROUTINE, name="water")
    asyncio.run(a.run_at(t13, t13 + 300, t13 - 300, t13, t13 + 60))
    eq(a.names(), ["feed_fish"], "ran again after a 10-minute step back")
    eq(civil.iso(dict((j["name"], j) for j in a.s.jobs())["water"]["next"], False), "2026-06-01T13:25",
       "an `every` job starts its interval at the step")
    b = Rig("stepback4h", Clock(t13 - 60))  # a clock 4 h ahead: the day's times follow the new clock
    b.s.add("0 13 * * *", ROUTINE, name="feed_fish")
    asyncio.run(b.run_at(t13, t13 + 300, t13 - 4 * 3600, t13))
    eq(b.names(), ["feed_fish", "feed_fish"], "a step of hours times the jobs afresh")


def test_one_shot_jobs_fire_once_and_are_removed():
    a = Rig("oneshot", Clock(T0))
    a.s.add("in 5m", ROUTINE, name="soon")
    a.s.add("at 2026-06-01T12:10", {"prompt": "remind me of the oven"}, name="oven")
    raises(lambda: a.s.add("at 2026-06-01T11:00", ROUTINE), "'at 2026-06-01T11:00' is in the past",
                 "local time now 2026-06-01T12:00")
    asyncio.run(a.run_at(T0 + 300, T0 + 400, T0 + 600, T0 + 700))
    eq(a.names(), ["soon", "oven"])
    eq(a.s.jobs(), [])
    eq(Rig("oneshot", Clock(T0 + 800)).s.jobs(), [], "one-shots gone after restart")
    # a one-shot missed during an outage: 'skip' drops it (logged), 'once' runs it late
    a.s.add("in 1m", ROUTINE, name="dropped")
    a.s.add("in 1m", ROUTINE, name="late", missed="once")
    b = Rig("oneshot", Clock(T0 + 86400))
    asyncio.run(b.run_at(T0 + 86400))
    eq(b.names(), ["late"])
    eq(b.s.jobs(), [])
    if not b.logged("job 'dropped' missed its run"):
        raise Exception(b.logs)


def test_limits_and_bad_jobs_are_refused_with_clear_errors():
    a = Rig("limits", Clock(T0))
    add = a.s.add
    raises(lambda: add("75 * * * *", ROUTINE), "cron: minute field '75' out of range 0-59")
    raises(lambda: add("0 0 30 2 *", ROUTINE), "never fires")
    raises(lambda: add("every 5m", {"prompt": "x" * (limits.MAX_ACTION_LEN + 1)}),
                 "job prompt must be text of 1-%d characters" % limits.MAX_ACTION_LEN)
    raises(lambda: add("every 5m", {"routine": "a", "prompt": "b"}), "job action must be")
    raises(lambda: add("every 5m", {"shell": "rm"}), "job action must be")
    raises(lambda: add("every 5m", ROUTINE, name="my job!"), "job name must be 1-24 characters")
    raises(lambda: add("every 5m", ROUTINE, name="n" * (limits.MAX_JOB_NAME + 1)), "job name")
    raises(lambda: add("every 5m", ROUTINE, tz="Europe/Paris"), "tz: 'Europe/Paris'")
    raises(lambda: add("every 5m", ROUTINE, missed="sometimes"), "missed must be 'skip' or 'once'")
    for i in range(limits.MAX_JOBS):
        add("every %dm" % (i + 1), ROUTINE, name="j%d" % i)
    raises(lambda: add("every 5m", ROUTINE, name="j3"), "a job named 'j3' already exists")
    raises(lambda: add("every 5m", ROUTINE, name="extra"), "job limit reached (%d jobs)" % limits.MAX_JOBS)
    with open("limits.json") as f:
        eq(len(json.load(f)["jobs"]), limits.MAX_JOBS, "jobs saved")
    a.s.remove("j3")
    add("every 5m", ROUTINE, name="extra")  # room again after a removal
    raises(lambda: a.s.remove("nope"), "no job named 'nope'; jobs: j0, j1")


def test_a_failing_job_is_logged_and_the_runner_goes_on():
    a = Rig("fail", Clock(T0), fail=("boom",))
    a.s.add("every 1m", ROUTINE, name="boom")
    a.s.add("every 1m", ROUTINE, name="fine")
    asyncio.run(a.run_at(T0 + 60, T0 + 120))
    eq(sorted(a.names()), ["boom", "boom", "fine", "fine"])
    if not a.logged("job 'boom' failed: kaboom"):
        raise Exception(a.logs)


async def test_runner_fires_an_every_1s_job_in_real_time():
    fired = []

    async def fire(job):
        fired.append(__import__("time").ticks_ms())
    s = Scheduler(make_device(), fire, store_path="realtime.json", log=print)
    task = asyncio.create_task(s.run())
    await asyncio.sleep_ms(20)  # the runner sleeps with no jobs; add() must wake it
    s.add("every 1s", ROUTINE, name="tick")
    for _ in range(70):  # at most 3.5 s
        if len(fired) >= 2:
            break
        await asyncio.sleep_ms(50)
    task.cancel()
    if len(fired) < 2:
        raise Exception("fired %d times in 3.5 s" % len(fired))
    for a, b in zip(fired, fired[1:]):
        gap = __import__("time").ticks_diff(b, a)
        if not 800 <= gap <= 1200:
            raise Exception("runs %d ms apart" % gap)
    if s.saves > 1:  # a job firing every second must not rewrite the flash every second
        raise Exception("%d saves" % s.saves)


def test_unreadable_jobs_file_is_kept_aside():
    with open("broken.json", "w") as f:
        f.write('{"v": 1, "jobs": [{"name": "wa')  # cut mid-write (no atomic save would leave this)
    a = Rig("broken", Clock(T0))
    eq(a.s.jobs(), [])
    with open("broken.bad") as f:
        eq(f.read(), '{"v": 1, "jobs": [{"name": "wa', "kept aside")
    if not a.logged("broken.json unreadable"):
        raise Exception(a.logs)
    a.s.add("every 5m", ROUTINE, name="again")
    eq([j["name"] for j in Rig("broken", Clock(T0)).s.jobs()], ["again"])
    # one bad entry: the good jobs load, the whole file is kept aside for the user
    good = {"name": "good", "spec": "every 5m", "action": ROUTINE, "missed": "skip", "next": T0 + 300}
    bad = {"name": "bad", "spec": "99 * * * *", "action": ROUTINE, "missed": "skip", "next": T0}
    with open("mixed.json", "w") as f:
        json.dump({"v": 1, "jobs": [good, bad]}, f)
    m = Rig("mixed", Clock(T0))
    eq([j["name"] for j in m.s.jobs()], ["good"])
    if not (exists("mixed.bad") and m.logged("minute field '99' out of range")):
        raise Exception(m.logs)
    eq([j["name"] for j in Rig("mixed", Clock(T0)).s.jobs()], ["good"])


def test_good_jobs_outlive_a_cut_while_a_bad_entry_is_set_aside():
    # a file with one bad entry is set aside, then the good jobs are saved: a power cut between the
    # two (here: the save never happens) must leave the good jobs for the next boot
    from wisp import store
    good = {"name": "good", "spec": "every 5m", "action": ROUTINE, "missed": "skip", "next": T0 + 300}
    bad = {"name": "bad", "spec": "99 * * * *", "action": ROUTINE, "missed": "skip", "next": T0}
    with open("cut.json", "w") as f:
        json.dump({"v": 1, "jobs": [good, bad]}, f)
    real_save = store.save

    def cut(name, obj):
        raise OSError("power cut")
    store.save = cut
    try:
        Rig("cut", Clock(T0))
    finally:
        store.save = real_save
    again = Rig("cut", Clock(T0))  # the reboot
    eq([j["name"] for j in again.s.jobs()], ["good"], "jobs after the cut")
    with open("cut.bad") as f:
        eq(json.load(f)["jobs"], [good, bad], "the whole file kept aside")
    eq([j["name"] for j in Rig("cut", Clock(T0)).s.jobs()], ["good"], "and saved at last")


async def test_a_failing_step_pauses_instead_of_spinning():
    # a step that raises (heap short) with a job still due: the runner used to retry every
    # millisecond, a log line each time; it waits, and a wake() still gets it going at once
    a = Rig("spin", Clock(T0))
    a.s.add("every 1m", ROUTINE, name="due")

    def heap_short(now):
        raise MemoryError("heap short")
    a.s._take_due = heap_short
    a.clock.t = T0 + 60
    task = asyncio.create_task(a.s.run())
    try:
        await asyncio.sleep_ms(300)
        eq(sum(1 for line in a.logs if "heap short" in line), 1, "errors logged in 300 ms")
        del a.s._take_due  # the heap is back
        a.s.wake()
        await asyncio.sleep_ms(20)
    finally:
        task.cancel()  # a runner left behind would go on in the next test's event loop
    eq(a.names(), ["due"])


async def test_a_job_whose_step_keeps_failing_does_not_hold_up_the_others():
    # one job's next run cannot be worked out (its zone's code does not load: heap short), every
    # time: the step used to raise for all jobs, so none fired, forever, 10 s pauses between tries
    a = Rig("stuck", Clock(T0))
    for name in ("early", "stuck", "late"):  # the jobs before it had their run taken and lost
        a.s.add("every 1m", ROUTINE, name=name)
    zone = a.s._zone

    def heap_short(job):
        if job and job["name"] == "stuck":
            raise MemoryError("memory allocation failed")
        return zone(job)
    a.s._zone = heap_short
    await a.run_at(T0 + 60, T0 + 120, T0 + 180)
    eq(sorted(a.names()), ["early"] * 3 + ["late"] * 3, "fired")
    eq([line for line in a.logs if "'stuck'" in line],
       ["schedule error: job 'stuck': its next run could not be worked out "
        "(MemoryError('memory allocation failed',)); trying again in %d s" % s for s in (10, 20, 40)])
    a.s._zone = zone  # the heap is back: it runs, and goes on from there
    await a.run_at(T0 + 220, T0 + 240)
    eq(sorted(a.names()), ["early"] * 4 + ["late"] * 4 + ["stuck"], "fired once it could")
    eq(a.s._find("stuck")["next"], T0 + 280, "its next run")


async def test_a_job_removed_while_failing_comes_back_with_a_fresh_backoff():
    # the retry count outlived the job: one added again under its name waited 80 s after its first failure
    a = Rig("again", Clock(T0))
    a.s.add("every 1m", ROUTINE, name="stuck")
    zone, short = a.s._zone, [True]

    def heap_short(job):
        if short[0] and job and job["name"] == "stuck":
            raise MemoryError("memory allocation failed")
        return zone(job)
    a.s._zone = heap_short
    await a.run_at(T0 + 60, T0 + 70, T0 + 90)
    a.s.remove("stuck")
    short[0] = False  # adding works out its first run
    a.s.add("every 1m", ROUTINE, name="stuck")
    short[0] = True
    await a.run_at(T0 + 180)
    eq([line[line.index("trying"):] for line in a.logs if "trying again" in line],
       ["trying again in %d s" % s for s in (10, 20, 40, 10)])


def test_nothing_fires_before_the_clock_is_set():
    a = Rig("clock", Clock(T0))
    a.s.add("every 1h", ROUTINE, name="hourly", missed="once")
    b = Rig("clock", Clock(1000))  # rebooted, no NTP time yet: the clock reads 1970
    raises(lambda: b.s.add("in 5m", ROUTINE), "clock not set yet")
    asyncio.run(b.run_at(1000, 1060, T0 + 7200))  # then NTP sets the clock
    eq(b.names(), ["hourly"])
    eq(sum(1 for line in b.logs if "clock not set" in line), 1, "warned once")


def test_device_timezone_and_per_job_override():
    dev = make_device()
    dev.config["tz"] = CET
    a = Rig("zones", Clock(T0), dev)
    cet = a.s.add("0 7 * * *", ROUTINE, name="paris")
    ny = a.s.add("0 7 * * *", ROUTINE, name="newyork", tz="EST5EDT,M3.2.0,M11.1.0")
    eq(civil.iso(cet["next"], False), "2026-06-02T05:00")  # 07:00 CEST
    eq(civil.iso(ny["next"], False), "2026-06-02T11:00")   # 07:00 EDT
    dev2 = make_device()
    dev2.config["tz"] = "Paris"
    b = Rig("zones", Clock(T0), dev2)
    eq(dev2.config["tz"], "UTC0", "a bad configured tz falls back to UTC0")
    if not b.logged("config error: tz: 'Paris'"):
        raise Exception(b.logs)


async def test_the_pure_schedule_modules_are_dropped_while_the_runner_sleeps():
    # and the editing code (sched_edit, ~3 KB from .mpy on a 32-bit port): between changes the
    # scheduler holds only the runner
    import sys
    rig = Rig("pure", Clock(T0))
    rig.s.add("30 22 * * *", ROUTINE, "nightly")
    if "wisp.nextrun" not in sys.modules or "wisp.sched_edit" not in sys.modules:
        raise Exception("add() should have used wisp.nextrun and wisp.sched_edit")
    await rig.run_at(T0 + 60)
    loaded = [m for m in ("wisp.sched_setup", "wisp.sched_edit", "wisp.nextrun", "wisp.cron", "wisp.tz", "wisp.civil")
              if m in sys.modules]
    eq(loaded, [], "modules held while nothing is due")
    eq([j["name"] for j in rig.s.jobs()], ["nightly"], "jobs after the editing code was dropped")
    rig.s.remove("nightly")  # loads it again
    eq(rig.s.jobs(), [], "jobs after a remove")
