# Schedule specs (wisp/cron.py) and calendar math (wisp/civil.py): parse errors a user can act on,
# names, steps, ranges, the day-of-month / day-of-week OR rule, month/year/leap-year ends.
from mpcheck import eq, raises

from wisp import civil, cron, nextrun


def _t(y, mo, d, h=0, mi=0, s=0):
    return civil.seconds(y, mo, d, h, mi, s)


def _fires(spec, start, n):
    """The next n fire times of spec after start, as ISO strings without seconds."""
    p, t, out = cron.parse(spec), start, []
    for _ in range(n):
        t = nextrun.next_fire(p, t)
        if t is None:
            break
        out.append(civil.iso(t, False))
    return out


def test_civil_calendar_agrees_with_the_ports_gmtime():
    for day in range(-700, 84000, 367):  # 1968 .. 2199, every weekday and month position
        y, mo, d, h, mi, s, wd = civil.fields(day * 86400 + 3723)
        g = __import__("time").gmtime(day * 86400 + 3723)
        eq((y, mo, d, h, mi, s), tuple(g[:6]), "day %d" % day)
        eq((wd + 6) % 7, g[6], "weekday of day %d" % day)  # gmtime counts Monday = 0
        eq(civil.days_from_civil(y, mo, d), day)


def test_parse_errors_name_the_field_and_the_range():
    eq(raises(lambda: cron.parse("75 * * * *")), "cron: minute field '75' out of range 0-59")
    raises(lambda: cron.parse("* 24 * * *"), "hour field '24' out of range 0-23")
    raises(lambda: cron.parse("* * 0 * *"), "day-of-month field '0' out of range 1-31")
    raises(lambda: cron.parse("* * * 13 *"), "month field '13' out of range 1-12")
    raises(lambda: cron.parse("* * * * 8"), "day-of-week field '8' out of range 0-7")
    raises(lambda: cron.parse("* * * * FUN"), "day-of-week field 'FUN' is not a number or a name like MON")
    raises(lambda: cron.parse("x * * * *"), "minute field 'x' is not a number")
    raises(lambda: cron.parse("*/0 * * * *"), "step '0' must be a whole number of 1 or more")
    raises(lambda: cron.parse("10-5 * * * *"), "range '10-5' runs backwards")
    raises(lambda: cron.parse("1,,2 * * * *"), "empty item")
    raises(lambda: cron.parse("* * * *"), "not understood", "every 10m")
    raises(lambda: cron.parse("* * * * * *"), "not understood")
    raises(lambda: cron.parse("@fortnightly"), "unknown macro", "@daily")
    raises(lambda: cron.parse("every 0s"), "between 1s and")
    raises(lambda: cron.parse("every 5 fortnights"), "with a unit s, m or h")
    raises(lambda: cron.parse("every 367 days"), "with a unit")
    raises(lambda: cron.parse("in 9000h"), "between 1s and 8784h")
    raises(lambda: cron.parse("in "), "not understood")
    raises(lambda: cron.parse("at 2026-02-30T07:00"), "day of 2026-02 '30' must be 1-28")
    raises(lambda: cron.parse("at 2025-02-29T07:00"), "must be 1-28")
    raises(lambda: cron.parse("at 2026-05-01 25:00"), "hour '25' must be 0-23")
    raises(lambda: cron.parse("at tomorrow"), "local time like 2026-05-01T07:30")
    raises(lambda: cron.parse(""), "1-64 characters")
    raises(lambda: cron.parse("* " * 40), "1-64 characters")
    try:
        cron.parse(None)
        raise Exception("None accepted")
    except ValueError as e:
        eq("must be a string" in str(e), True, str(e))



def test_a_negative_number_or_half_range_is_named_in_the_error():
    # '-5' split as a range whose start is '': the error said "minute field '' is not a number"
    eq(raises(lambda: cron.parse("-5 * * * *")), "cron: minute field '-5' is not a number")
    raises(lambda: cron.parse("0 7- * * *"), "hour field '7-' is not a number")
    raises(lambda: cron.parse("0 0 * * -1"), "day-of-week field '-1' is not a number")

def test_a_huge_step_is_a_step_not_an_overflow():
    # a step past the field's span picks its start only (cron(5)); range() takes machine words, so
    # '0/99999999999999999999' raised OverflowError, which callers catching ValueError let through
    eq(cron.parse("0/99999999999999999999 * * * *"), cron.parse("0 * * * *"))
    eq(cron.parse("0 */99999999999999999999 * * 1-5/99999999999999999999"), cron.parse("0 */24 * * 1"))


def test_names_are_case_insensitive_and_dow_7_is_sunday():
    eq(cron.parse("0 9 * jan,Jul mon-FRI"), cron.parse("0 9 * 1,7 1-5"))
    eq(cron.parse("0 9 * * 7"), cron.parse("0 9 * * SUN"))
    eq(cron.parse("0 9 * * 0"), cron.parse("0 9 * * sun"))
    eq(cron.parse("0 9 * * 5-7"), cron.parse("0 9 * * fri,sat,sun"))
    eq(cron.parse("@daily"), cron.parse("0 0 * * *"))
    eq(cron.parse("@hourly"), cron.parse("0 * * * *"))


def test_steps_ranges_and_lists():
    start = _t(2026, 6, 1, 9, 59)
    eq(_fires("*/15 * * * *", start, 5),
        ["2026-06-01T10:00", "2026-06-01T10:15", "2026-06-01T10:30", "2026-06-01T10:45", "2026-06-01T11:00"])
    eq(_fires("5/20 * * * *", start, 4),
        ["2026-06-01T10:05", "2026-06-01T10:25", "2026-06-01T10:45", "2026-06-01T11:05"])
    eq(_fires("0 1-10/3 * * *", start, 4),
        ["2026-06-01T10:00", "2026-06-02T01:00", "2026-06-02T04:00", "2026-06-02T07:00"])
    eq(_fires("0,30 8,18 * * *", start, 4),
        ["2026-06-01T18:00", "2026-06-01T18:30", "2026-06-02T08:00", "2026-06-02T08:30"])
    # the example: every 5 minutes from 7 to 9:55 on weekdays; 2026-06-05 is a Friday
    eq(_fires("*/5 7-9 * * 1-5", _t(2026, 6, 5, 9, 54), 3),
        ["2026-06-05T09:55", "2026-06-08T07:00", "2026-06-08T07:05"])


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # 13th OR any Friday (standard cron); 2026-03-13 is itself a Friday
    eq(_fires("0 12 13 * fri", _t(2026, 3, 1), 7),
        ["2026-03-06T12:00", "2026-03-13T12:00", "2026-03-20T12:00", "2026-03-27T12:00",
         "2026-04-03T12:00", "2026-04-10T12:00", "2026-04-13T12:00"])
    # one side '*': only the other one counts
    eq(_fires("0 12 * * fri", _t(2026, 4, 10, 13), 2), ["2026-04-17T12:00", "2026-04-24T12:00"])
    eq(_fires("0 12 13 * *", _t(2026, 3, 14), 2), ["2026-04-13T12:00", "2026-05-13T12:00"])
    # a field starting with '*' counts as unrestricted (Vixie cron): odd days that are Fridays
    eq(_fires("0 12 */2 * fri", _t(2026, 3, 1), 3), ["2026-03-13T12:00", "2026-03-27T12:00", "2026-04-03T12:00"])


def test_month_year_and_leap_year_ends():
    eq(_fires("* * * * *", _t(2026, 1, 31, 23, 59), 1), ["2026-02-01T00:00"])
    eq(_fires("* * * * *", _t(2026, 12, 31, 23, 59, 30), 1), ["2027-01-01T00:00"])
    eq(_fires("0 0 31 * *", _t(2026, 3, 31, 0, 0), 3), ["2026-05-31T00:00", "2026-07-31T00:00", "2026-08-31T00:00"])
    eq(_fires("0 0 29 2 *", _t(2025, 3, 1), 2), ["2028-02-29T00:00", "2032-02-29T00:00"])
    eq(_fires("0 0 29 2 *", _t(2096, 3, 1), 1), ["2104-02-29T00:00"])  # 2100 is not a leap year
    eq(_fires("59 23 28-31 2 *", _t(2028, 2, 28, 23, 59), 1), ["2028-02-29T23:59"])
    eq(_fires("0 0 1 jan *", _t(2026, 1, 1), 1), ["2027-01-01T00:00"])  # strictly after


def test_impossible_dates_never_fire():
    eq(nextrun.next_fire(cron.parse("0 0 30 2 *"), _t(2026, 1, 1)), None)
    eq(nextrun.next_fire(cron.parse("0 0 31 4,6,9,11 *"), _t(2026, 1, 1)), None)


def test_next_fire_is_strictly_after_and_ignores_seconds():
    p = cron.parse("30 7 * * *")
    eq(civil.iso(nextrun.next_fire(p, _t(2026, 6, 1, 7, 30))), "2026-06-02T07:30:00")
    eq(civil.iso(nextrun.next_fire(p, _t(2026, 6, 1, 7, 29, 59) + 0.5)), "2026-06-01T07:30:00")


def test_every_at_in():
    eq(cron.parse("every 90s"), (cron.EVERY, 90))
    eq(cron.parse("every 5m"), (cron.EVERY, 300))
    eq(cron.parse("Every 2 hours"), (cron.EVERY, 7200))
    eq(cron.parse("in 20m"), (cron.IN, 1200))
    eq(cron.parse("in 1h"), (cron.IN, 3600))
    at = cron.parse("at 2026-05-01T07:30")
    eq(at, (cron.AT, _t(2026, 5, 1, 7, 30)))
    eq(cron.parse("at 2026-05-01 07:30:15"), (cron.AT, _t(2026, 5, 1, 7, 30, 15)))
    eq(nextrun.next_fire(at, _t(2026, 5, 1, 7, 29)), _t(2026, 5, 1, 7, 30))
    eq(nextrun.next_fire(at, _t(2026, 5, 1, 7, 30)), None)
    eq(nextrun.next_fire(cron.parse("every 10m"), 1000), 1600)
    one_shot = nextrun.one_shot
    eq(one_shot(at) and one_shot(cron.parse("in 5s")) and not one_shot(cron.parse("every 5s")), True)
    eq(nextrun.one_shot(cron.parse("* * * * *")), False)


def test_next_fire_matches_a_minute_by_minute_search():
    # the day/month jumps must never skip a match: compare with a plain scan over 20 days
    specs = ("17 */5 * * *", "0 0 1,15 * *", "*/20 3 * feb-mar tue,thu", "45 23 28-31 * 6", "0 12 29 2 *")
    start = _t(2028, 2, 12, 11, 3)
    for spec in specs:
        p = cron.parse(spec)
        want, t = [], start // 60 * 60 + 60
        while t < start + 20 * 86400 and len(want) < 6:
            y, mo, d, h, mi, _s, wd = civil.fields(t)
            dom, dow = p[3] >> d & 1, p[5] >> wd & 1
            day = (dom and dow) if p[6] & (cron.DOM_STAR | cron.DOW_STAR) else (dom or dow)
            if p[1] >> mi & 1 and p[2] >> h & 1 and p[4] >> mo & 1 and day:
                want.append(civil.iso(t, False))
            t += 60
        if not want:
            raise Exception("%s: no match in the scanned window; the check would prove nothing" % spec)
        eq(_fires(spec, start, len(want)), want, spec)
