# POSIX TZ strings (wisp/tz.py) and what scheduled jobs do on DST transition days
# (the scheduler's cron times through a spring-forward gap and a fall-back overlap).
import asyncio
import os

from fakeboard import make_device
from mpcheck import eq, raises

from wisp import civil, tz
from wisp.sched import Scheduler

CET = "CET-1CEST,M3.5.0,M10.5.0/3"
US = "EST5EDT,M3.2.0,M11.1.0"
SYDNEY = "AEST-10AEDT,M10.1.0,M4.1.0/3"


def _t(y, mo, d, h=0, mi=0, s=0):
    return civil.seconds(y, mo, d, h, mi, s)


def _local(utc, zone):
    off, abbr = tz.offset(utc, zone)
    return "%s %s" % (civil.iso(utc + off, False), abbr)


def test_parse_offsets_are_east_of_utc_and_names_are_kept():
    eq(tz.parse("UTC0")[:2], (0, None))
    eq(tz.parse("CET-1")[0], 3600)
    eq(tz.parse("EST5")[0], -18000)
    eq(tz.parse("<+0530>-5:30")[0], 19800)
    eq(tz.parse("<-03>3")[0], -10800)
    z = tz.parse(CET)
    eq((z[0], z[1], z[4], z[5]), (3600, 7200, "CET", "CEST"))
    eq(tz.parse("NZST-12NZDT-13,M9.5.0,M4.1.0/3")[1], 46800)
    eq(tz.parse("UTC"), tz.parse("UTC"))  # a bare UTC/GMT is accepted


def test_bad_strings_give_clear_errors():
    raises(lambda: tz.parse("CET"), "needs an offset after the name", "CET-1 is UTC+1")
    raises(lambda: tz.parse("CET-1CEST"), "names a DST zone but gives no rules")
    raises(lambda: tz.parse("EST5EDT,M3.2.0"), "needs two DST rules")
    raises(lambda: tz.parse("EST5EDT,M13.2.0,M11.1.0"), "month 1-12")
    raises(lambda: tz.parse("EST5EDT,M3.6.0,M11.1.0"), "week 1-5")
    raises(lambda: tz.parse("EST5EDT,M3.2.7,M11.1.0"), "weekday 0-6")
    raises(lambda: tz.parse("EST5EDT,M3.2.0,M11.1.0x"), "unexpected text")
    raises(lambda: tz.parse("EST5EDT,Q3,M11.1.0"), "needs a DST rule")
    raises(lambda: tz.parse("E5"), "zone name of 3+ letters")
    raises(lambda: tz.parse("EST25"), "UTC offset out of range")
    raises(lambda: tz.parse("<+05"), "bad <quoted> zone name")
    raises(lambda: tz.parse(""), "must be a string")
    raises(lambda: tz.parse("x" * 100), "must be a string of 1-64")
    raises(lambda: tz.parse(5), "must be a string")


def test_a_tz_database_name_is_told_to_give_a_posix_string():
    # an LLM's first guess: say what the device needs, not "needs a UTC offset (at character 7)"
    raises(lambda: tz.parse("Europe/Paris"), "tz: 'Europe/Paris' is a tz database name",
           "like 'CET-1CEST,M3.5.0,M10.5.0/3'")
    raises(lambda: tz.parse("America/New_York"), "is a tz database name")
    eq(tz.parse("CET-1CEST,M3.5.0/2,M10.5.0/3")[2], ("M", 3, 5, 0, 7200))  # '/' in a rule is its time


def test_cet_transitions():
    # spring: 2026-03-29 01:00 UTC, 02:00 CET -> 03:00 CEST
    eq(_local(_t(2026, 3, 29, 0, 59), CET), "2026-03-29T01:59 CET")
    eq(_local(_t(2026, 3, 29, 1, 0), CET), "2026-03-29T03:00 CEST")
    # autumn: 2026-10-25 01:00 UTC, 03:00 CEST -> 02:00 CET
    eq(_local(_t(2026, 10, 25, 0, 59), CET), "2026-10-25T02:59 CEST")
    eq(_local(_t(2026, 10, 25, 1, 0), CET), "2026-10-25T02:00 CET")
    eq(_local(_t(2026, 7, 1), CET), "2026-07-01T02:00 CEST")
    eq(_local(_t(2026, 12, 31, 23), CET), "2027-01-01T00:00 CET")


def test_us_transitions():
    # 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC)
    eq(_local(_t(2026, 3, 8, 6, 59), US), "2026-03-08T01:59 EST")
    eq(_local(_t(2026, 3, 8, 7, 0), US), "2026-03-08T03:00 EDT")
    eq(_local(_t(2026, 11, 1, 5, 59), US), "2026-11-01T01:59 EDT")
    eq(_local(_t(2026, 11, 1, 6, 0), US), "2026-11-01T01:00 EST")
    eq(_local(_t(2027, 3, 14, 7, 0), US), "2027-03-14T03:00 EDT")  # second Sunday of 2027


def test_southern_hemisphere_dst_spans_new_year():
    eq(_local(_t(2026, 1, 15), SYDNEY), "2026-01-15T11:00 AEDT")
    eq(_local(_t(2026, 7, 15), SYDNEY), "2026-07-15T10:00 AEST")
    eq(_local(_t(2026, 12, 31, 13), SYDNEY), "2027-01-01T00:00 AEDT")
    # 2026-04-05 03:00 AEDT -> 02:00 AEST; 2026-10-04 02:00 AEST -> 03:00 AEDT
    eq(_local(_t(2026, 4, 4, 15, 59), SYDNEY), "2026-04-05T02:59 AEDT")
    eq(_local(_t(2026, 4, 4, 16, 0), SYDNEY), "2026-04-05T02:00 AEST")
    eq(_local(_t(2026, 10, 3, 15, 59), SYDNEY), "2026-10-04T01:59 AEST")
    eq(_local(_t(2026, 10, 3, 16, 0), SYDNEY), "2026-10-04T03:00 AEDT")


def test_julian_day_rules():
    # Jn never counts Feb 29: J60 is March 1 even in 2028; n counts from 0 with Feb 29: 59 is Feb 29
    z = tz.parse("AAA0BBB,J60/0,J300/0")
    eq(_local(_t(2028, 2, 29, 23, 59), z), "2028-02-29T23:59 AAA")
    eq(_local(_t(2028, 3, 1), z), "2028-03-01T01:00 BBB")
    z = tz.parse("AAA0BBB,59/0,300/0")
    eq(_local(_t(2028, 2, 29), z), "2028-02-29T01:00 BBB")


def test_local_to_utc_gap_moves_forward_and_overlap_takes_the_first():
    eq(tz.local_to_utc(_t(2026, 3, 29, 2, 30), CET), _t(2026, 3, 29, 1, 30))    # 02:30 -> 03:30 CEST
    eq(tz.local_to_utc(_t(2026, 10, 25, 2, 30), CET), _t(2026, 10, 25, 0, 30))  # 02:30 CEST
    eq(tz.local_to_utc(_t(2026, 3, 8, 2, 30), US), _t(2026, 3, 8, 7, 30))        # 03:30 EDT
    eq(tz.local_to_utc(_t(2026, 11, 1, 1, 30), US), _t(2026, 11, 1, 5, 30))      # 01:30 EDT
    eq(tz.local_to_utc(_t(2026, 10, 4, 2, 30), SYDNEY), _t(2026, 10, 3, 16, 30))  # 03:30 AEDT
    eq(tz.local_to_utc(_t(2026, 6, 1, 12), "<+0530>-5:30"), _t(2026, 6, 1, 6, 30))


def test_round_trip_every_hour_of_a_year():
    z = tz.parse(CET)
    u = _t(2026, 1, 1)
    while u < _t(2027, 1, 1):
        back = tz.local_to_utc(u + tz.offset(u, z)[0], z)
        in_overlap = _t(2026, 10, 25, 1) <= u < _t(2026, 10, 25, 2)  # the second 02:xx maps to the first
        eq(back, u - 3600 if in_overlap else u, civil.iso(u))
        u += 3600


# ---- scheduled jobs on transition days ---------------------------------------------------

def _job_fires(spec, zone, start, n):
    """Local times (with zone abbreviations) at which the runner fires spec, from UTC start."""
    for f in ("tz.json", "dst.json"):
        try:
            os.remove(f)
        except OSError:
            pass
    clock = [start]
    fired = []

    async def fire(job):
        fired.append(_local(clock[0], zone))

    async def go():
        dev = make_device()
        s = Scheduler(dev, fire, now=lambda: clock[0], store_path="dst.json", log=lambda m: None)
        s.add(spec, {"routine": "r"}, name="j", tz=zone)
        runner = asyncio.create_task(s.run())
        for _ in range(n):
            clock[0] = s.jobs()[0]["next"]
            s.wake()
            await asyncio.sleep_ms(2)
        runner.cancel()
    asyncio.run(go())
    return fired


def test_daily_0230_job_on_cet_transition_days():
    # spring: 02:30 does not exist that night, the job runs at 03:30 CEST, then 02:30 again
    eq(_job_fires("30 2 * * *", CET, _t(2026, 3, 28, 12), 3),
        ["2026-03-29T03:30 CEST", "2026-03-30T02:30 CEST", "2026-03-31T02:30 CEST"])
    # autumn: 02:30 happens twice; the job runs once, in the first pass
    eq(_job_fires("30 2 * * *", CET, _t(2026, 10, 24, 12), 3),
        ["2026-10-25T02:30 CEST", "2026-10-26T02:30 CET",
         "2026-10-27T02:30 CET"])
    # southern spring (Sydney, 2026-10-04): same rule, in October
    eq(_job_fires("30 2 * * *", SYDNEY, _t(2026, 10, 3, 0), 2), ["2026-10-04T03:30 AEDT", "2026-10-05T02:30 AEDT"])


def test_every_time_a_job_has_in_the_gap_runs_shifted():
    # 02:00 and 02:30 do not exist on 2026-03-29: both run, at 03:00 and 03:30 CEST
    eq(_job_fires("0,30 2 * * *", CET, _t(2026, 3, 28, 12), 3),
        ["2026-03-29T03:00 CEST", "2026-03-29T03:30 CEST", "2026-03-30T02:00 CEST"])
    eq(_job_fires("*/20 2 * * *", US, _t(2026, 3, 7, 12), 4),
        ["2026-03-08T03:00 EDT", "2026-03-08T03:20 EDT", "2026-03-08T03:40 EDT", "2026-03-09T02:00 EDT"])


def test_a_pinned_job_run_late_into_the_repeated_hour_runs_once():
    # 02:59 CEST fires 90 s late (within the grace), when the clock already reads 02:00:30 CET
    try:
        os.remove("dst.json")
    except OSError:
        pass
    clock = [_t(2026, 10, 24, 12)]
    fired = []

    async def fire(job):
        fired.append(_local(clock[0], CET))

    async def go():
        s = Scheduler(make_device(), fire, now=lambda: clock[0], store_path="dst.json", log=lambda m: None)
        job = s.add("59 2 * * *", {"routine": "r"}, name="j", tz=CET)
        runner = asyncio.create_task(s.run())
        for t in (job["next"] + 90, _t(2026, 10, 25, 1, 59), _t(2026, 10, 26, 1, 59)):
            clock[0] = t
            s.wake()
            await asyncio.sleep_ms(2)
        runner.cancel()
    asyncio.run(go())
    eq(fired, ["2026-10-25T02:00 CET", "2026-10-26T02:59 CET"])  # not again at 02:59 CET


def test_a_job_added_in_the_repeated_hour_keeps_to_the_first_pass():
    # added at 02:10 CET (the second 02:10): its 02:30 came in the first pass, like `at 02:30`
    try:
        os.remove("dst.json")
    except OSError:
        pass

    async def fire(job):
        pass
    now = _t(2026, 10, 25, 1, 10)
    s = Scheduler(make_device(), fire, now=lambda: now, store_path="dst.json", log=lambda m: None)
    eq(_local(s.add("30 2 * * *", {"routine": "r"}, name="pinned", tz=CET)["next"], CET), "2026-10-26T02:30 CET")
    eq(_local(s.add("30 * * * *", {"routine": "r"}, name="hourly", tz=CET)["next"], CET), "2026-10-25T02:30 CET")
    raises(lambda: s.add("at 2026-10-25T02:30", {"routine": "r"}, tz=CET), "in the past")


def test_wall_clock_jobs_keep_their_rhythm_through_transitions():
    # '*' in the hour field: runs by the wall clock, so both passes of the repeated hour run
    eq(_job_fires("*/30 * * * *", CET, _t(2026, 10, 25, 0, 10), 5),
        ["2026-10-25T02:30 CEST", "2026-10-25T02:00 CET", "2026-10-25T02:30 CET",
         "2026-10-25T03:00 CET", "2026-10-25T03:30 CET"])
    eq(_job_fires("*/30 * * * *", CET, _t(2026, 3, 29, 0, 10), 3),
        ["2026-03-29T01:30 CET", "2026-03-29T03:00 CEST", "2026-03-29T03:30 CEST"])
    # US: 01:30 repeats on 2026-11-01; a job pinned to 1:30 runs once
    eq(_job_fires("30 1 * * *", US, _t(2026, 10, 31, 12), 2),
        ["2026-11-01T01:30 EDT", "2026-11-02T01:30 EST"])


def test_every_jobs_ignore_dst():
    eq(_job_fires("every 1h", CET, _t(2026, 10, 24, 23, 0), 4),
        ["2026-10-25T02:00 CEST", "2026-10-25T02:00 CET", "2026-10-25T03:00 CET", "2026-10-25T04:00 CET"])
