"""Time zones, for any instant: wisp/tz.py's POSIX rules agree with the system's tz database where
the rule is the law, and local <-> UTC round trips outside the spring-forward gap (inside it the
time moves forward by the jump, as documented)."""
import datetime
import zoneinfo

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.props.firmware import load

tz, civil = load("tz"), load("civil")

PROPS = settings(max_examples=300, deadline=None)
# POSIX rule -> IANA zone and the years in which that rule is the zone's law
RULES = {
    "CET-1CEST,M3.5.0,M10.5.0/3": ("Europe/Berlin", 1996, 2037),
    "GMT0BST,M3.5.0/1,M10.5.0": ("Europe/London", 1996, 2037),
    "EST5EDT,M3.2.0,M11.1.0": ("America/New_York", 2007, 2037),
    "PST8PDT,M3.2.0,M11.1.0": ("America/Los_Angeles", 2007, 2037),
    "AEST-10AEDT,M10.1.0,M4.1.0/3": ("Australia/Sydney", 2009, 2037),       # DST across New Year
    "NZST-12NZDT,M9.5.0,M4.1.0/3": ("Pacific/Auckland", 2009, 2037),
    "<-02>2<-01>,M3.5.0/-1,M10.5.0/0": ("America/Nuuk", 2024, 2037),        # a negative rule time
    "LHST-10:30LHDT-11,M10.1.0,M4.1.0": ("Australia/Lord_Howe", 2009, 2037),  # a 30-minute jump
    "IST-5:30": ("Asia/Kolkata", 1970, 2037),
    "<+0545>-5:45": ("Asia/Kathmandu", 1987, 2037),
    "UTC0": ("UTC", 1970, 2037),
}
# rules with no zone behind them: Julian and zero-based day rules
EXTRA = ["XST3XDT,J60/2,J300/2", "ABC-2DEF,59/1:30,300", "QQQ-3RRR-4:15,M5.1.6/25,M9.5.6/-1"]



def utc_to_local(utc, z):
    """The wall clock at UTC utc (the firmware needs only the offset: wisp/tz.py offset)."""
    return utc + tz.offset(utc, z)[0]

@st.composite
def instants(draw):
    rule = draw(st.sampled_from(sorted(RULES)))
    _, y0, y1 = RULES[rule]
    return rule, draw(st.integers(civil.seconds(y0, 1, 1) + 86400, civil.seconds(y1, 12, 31) - 86400))


@PROPS
@given(instants())
def test_offsets_agree_with_the_tz_database(case):
    rule, utc = case
    zone = zoneinfo.ZoneInfo(RULES[rule][0])
    want = datetime.datetime.fromtimestamp(utc, zone).utcoffset().total_seconds()
    assert tz.offset(utc, rule)[0] == want, (rule, civil.iso(utc))


def valid_instants(local, z):
    """The UTC instants that show `local` on the wall clock (two in an overlap, none in a gap)."""
    offsets = {z[0]} if z[1] is None else {z[0], z[1]}
    return sorted(local - off for off in offsets if utc_to_local(local - off, z) == local)


@st.composite
def near_changes(draw):
    """A local wall time within two hours of a DST switch: where gaps and overlaps are."""
    rule = draw(st.sampled_from([r for r in sorted(RULES) + EXTRA if tz.parse(r)[1] is not None]))
    start = civil.seconds(draw(st.integers(1971, 2149)), draw(st.integers(1, 12)), 1)
    change = tz.next_change(start, rule)
    return rule, utc_to_local(change, rule) + draw(st.integers(-7200, 7200))


any_local = st.tuples(st.sampled_from(sorted(RULES) + EXTRA),
                      st.integers(civil.seconds(1971, 1, 1), civil.seconds(2150, 1, 1)))


@PROPS
@given(near_changes() | any_local)
def test_local_to_utc_round_trips_and_moves_gap_times_forward(case):
    rule, local = case
    z = tz.parse(rule)
    utc = tz.local_to_utc(local, z)
    valid = valid_instants(local, z)
    event(["gap", "unique", "overlap"][len(valid)])
    if valid:
        assert utc == valid[0]  # an overlap means the first occurrence
        assert utc_to_local(utc, z) == local
    else:  # spring forward: 02:30 becomes 03:30
        assert utc_to_local(utc, z) == local + abs(z[1] - z[0])


@PROPS
@given(st.sampled_from(sorted(RULES) + EXTRA), st.integers(civil.seconds(1971, 1, 1), civil.seconds(2150, 1, 1)))
def test_next_change_is_where_the_offset_really_changes(rule, utc):
    z = tz.parse(rule)
    nxt = tz.next_change(utc, z)
    if z[1] is None:
        assert nxt is None
        return
    assert utc < nxt <= utc + 366 * 86400
    assert tz.offset(nxt - 1, z)[0] != tz.offset(nxt, z)[0]
    assert tz.offset(utc, z)[0] == tz.offset(nxt - 1, z)[0]
    mid = (utc + nxt) // 2  # and nothing changed in between
    assert tz.offset(mid, z)[0] == tz.offset(utc, z)[0]
