"""Next runs across DST changes: wisp/nextrun.py gives, for cron specs near any switch of a POSIX
zone, the first UTC minute that a plain minute-by-minute walk (written here on Python's datetime)
says fires, by the documented rules: a match skipped by spring forward runs shifted by the jump;
in a repeated hour, jobs pinned to hours run in the first pass only, '*' hours in both. Interval
jobs keep their phase. The firmware on the real unix port computes the same times."""
import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.props.firmware import collect, load, run_batch

nextrun, cron, tz, civil = load("nextrun"), load("cron"), load("tz"), load("civil")

PROPS = settings(max_examples=200, deadline=None)
BATCH = 200
WINDOW_S = 2 * 86400  # every spec drawn here fires at least once a day
RULES = ["CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT,M3.2.0,M11.1.0", "AEST-10AEDT,M10.1.0,M4.1.0/3",
         "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", "LHST-10:30LHDT-11,M10.1.0,M4.1.0", "XST3XDT,J60/2,J300/2",
         "QQQ-3RRR-4:15,M5.1.6/25,M9.5.6/-1"]
EPOCH = datetime.datetime(1970, 1, 1)


@st.composite
def hour_fields(draw, near):
    """(text, hours, pinned); pinned hours mostly around `near`, the wall-clock hour of a switch."""
    kind = draw(st.sampled_from(["*", "*/n", "list", "range"]))
    if kind == "*":
        return "*", set(range(24)), False
    if kind == "*/n":
        n = draw(st.integers(2, 5))
        return "*/%d" % n, set(range(0, 24, n)), False  # starts with '*': runs by the wall clock
    if kind == "range":
        a = draw(st.integers(max(0, near - 2), near))
        b = draw(st.integers(a, min(23, near + 2)))
        return "%d-%d" % (a, b), set(range(a, b + 1)), True
    hours = draw(st.lists(st.integers(max(0, near - 1), min(23, near + 1)) | st.integers(0, 23),
                          min_size=1, max_size=3, unique=True))
    return ",".join(map(str, hours)), set(hours), True


@st.composite
def cases(draw):
    """(spec, minutes, hours, pinned, rule, after): a daily cron spec and a start near a switch."""
    rule = draw(st.sampled_from(RULES))
    start = civil.seconds(draw(st.integers(1971, 2100)), draw(st.integers(1, 12)), 1)
    change = tz.next_change(start, rule)
    after = change + draw(st.integers(-3 * 3600, 3 * 3600))
    near = (change - 1 + tz.offset(change - 1, rule)[0]) % 86400 // 3600
    minutes = draw(st.lists(st.sampled_from([0, 1, 15, 29, 30, 45, 59]), min_size=1, max_size=3, unique=True))
    hour_text, hours, pinned = draw(hour_fields(near))
    spec = "%s %s * * *" % (",".join(map(str, minutes)), hour_text)
    return spec, set(minutes), hours, pinned, rule, after


def walk(minutes, hours, pinned, rule, after):
    """The first UTC minute after `after` at which the job fires, minute by minute."""
    z = tz.parse(rule)
    switches = []  # (UTC second, offset before, offset after) of the changes from a day before `after`:
    c = tz.next_change(after - 86400, z)  # a search that starts within a jump still sees its change
    while c is not None and c <= after + WINDOW_S:
        switches.append((c, tz.offset(c - 1, z)[0], tz.offset(c, z)[0]))
        c = tz.next_change(c, z)

    def matches(local):
        t = EPOCH + datetime.timedelta(seconds=local)
        return t.minute in minutes and t.hour in hours

    off = tz.offset(after, z)[0]
    m = (after // 60 + 1) * 60
    while m <= after + WINDOW_S:
        for c, _before, now in switches:
            if c <= m:
                off = now
        fires = matches(m + off)
        for c, before, now in switches:
            if now < before and c <= m < c + before - now and pinned:
                fires = False  # the second pass of a repeated hour
            if now > before and c <= m < c + now - before and matches(m + before):
                fires = True   # a wall time the jump skipped runs shifted by the jump
        if fires:
            return m
        m += 60
    raise AssertionError("no run within %d s" % WINDOW_S)


@PROPS
@given(cases())
def test_cron_runs_follow_the_wall_clock_through_dst_switches(case):
    spec, minutes, hours, pinned, rule, after = case
    got = nextrun.cron_after(cron.parse(spec), tz.parse(rule), after)
    assert got == walk(minutes, hours, pinned, rule, after), (spec, rule, civil.iso(after))


@PROPS
@given(st.integers(1, 86400), st.integers(0, 2 ** 32), st.integers(0, 10 ** 7))
def test_an_interval_job_keeps_its_phase(every, last, late):
    now = last + late
    got = nextrun.following((cron.EVERY, every), tz.parse("UTC0"), last, now)
    assert now < got <= now + every and (got - last) % every == 0


@PROPS
@given(st.sampled_from(RULES), st.integers(civil.seconds(1971, 1, 1), civil.seconds(2100, 1, 1)),
       st.integers(-86400, 86400))
def test_an_at_job_runs_at_its_wall_time_and_never_in_the_past(rule, local, ahead):
    z = tz.parse(rule)
    now = tz.local_to_utc(local, z) - ahead
    got = nextrun.first((cron.AT, local), z, now)
    if ahead <= 0:
        assert got is None
    else:
        assert got == tz.local_to_utc(local, z) and got > now
        assert nextrun.retimed((cron.AT, local), z, 0, now) == got


DEVICE_RUN = """
import json
from wisp import cron, nextrun, tz
for line in open("cases.json"):
    c = json.loads(line)
    print(json.dumps(nextrun.cron_after(cron.parse(c["spec"]), tz.parse(c["rule"]), c["after"])))
"""


def test_the_device_computes_the_same_runs(tmp_path):
    cfg = settings(max_examples=BATCH, deadline=None, database=None)
    drawn = collect(cases(), BATCH, cfg)
    out = run_batch(tmp_path, DEVICE_RUN, [{"spec": c[0], "rule": c[4], "after": c[5]} for c in drawn])
    assert out == [nextrun.cron_after(cron.parse(c[0]), tz.parse(c[4]), c[5]) for c in drawn]
