"""Schedules, for any valid 5-field spec and start time: wisp/cron.py fires exactly when a plain
field-by-field matcher (written here on Python's datetime, with Vixie cron's day-of-month /
day-of-week OR rule) first would; bad specs raise ValueError with a message; and the firmware on
the real unix port computes the same times as under CPython."""
import datetime
import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.props.firmware import collect, load, run_batch

cron, nextrun, civil, limits = load("cron"), load("nextrun"), load("civil"), load("limits")

PROPS = settings(max_examples=300, deadline=None)
BATCH = 200
SEARCH_DAYS = 2928  # nextrun.py looks this far ahead (8 years) and then says "never" (None)
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAYS = "SUN MON TUE WED THU FRI SAT".split()
FIELDS = ((0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTHS), (0, 7, DAYS))
EPOCH = datetime.date(1970, 1, 1)
LATEST = civil.seconds(2190, 1, 1)


@st.composite
def value(draw, lo, hi, names, at_least=None):
    v = draw(st.integers(at_least if at_least is not None else lo, hi))
    if names and v - lo < len(names) and draw(st.booleans()):
        name = names[v - lo]
        return v, draw(st.sampled_from([name, name.lower(), name.title()]))
    return v, str(v)


@st.composite
def item(draw, lo, hi, names):
    """(text, allowed values) of one comma-separated item."""
    kind = draw(st.sampled_from(["*", "*/s", "a", "a-b", "a-b/s", "a/s"]))
    step = draw(st.integers(2, hi - lo + 2)) if kind.endswith("/s") else 1
    if kind.startswith("*"):
        a, b, text = lo, hi, "*"
    else:
        a, ta = draw(value(lo, hi, names))
        b, tb = draw(value(lo, hi, names, at_least=a)) if "-" in kind else (hi if kind == "a/s" else a, "")
        text = ta + ("-" + tb if "-" in kind else "")
    text += "/%d" % step if kind.endswith("/s") else ""
    return text, set(range(a, b + 1, step))


@st.composite
def field(draw, lo, hi, names):
    items = draw(st.lists(item(lo, hi, names), min_size=1, max_size=3))
    return ",".join(t for t, _ in items), set().union(*(v for _, v in items))


@st.composite
def specs(draw):
    """(spec text, reference description) of a valid 5-field cron spec."""
    parts = [draw(field(*f)) for f in FIELDS]
    text = " ".join(t for t, _ in parts)
    assume(len(text) <= limits.MAX_SPEC_LEN)
    minutes, hours, doms, months, dows = (v for _, v in parts)
    dows = {d % 7 for d in dows}  # 7 is Sunday too
    return text, (minutes, hours, doms, months, dows, parts[2][0][0] == "*", parts[4][0][0] == "*")


def month_end(y, m):
    return civil.seconds(y, m, civil.days_in_month(y, m), 23, 59, 30)


starts = (st.integers(0, LATEST) | st.floats(0, LATEST)
          | st.builds(month_end, st.integers(1970, 2180), st.integers(1, 12)))


def reference_next(ref, t):
    """First whole minute after t that the spec matches, searching cron.py's horizon day by day."""
    minutes, hours, doms, months, dows, dom_star, dow_star = ref
    first = int(t) // 60 * 60 + 60
    day0 = first // 86400
    for day in range(day0, day0 + SEARCH_DAYS + 1):
        date = EPOCH + datetime.timedelta(days=day)
        dom_ok, dow_ok = date.day in doms, date.isoweekday() % 7 in dows
        # Vixie cron: if either day field starts with '*', both must match; else either may
        if date.month not in months or not ((dom_ok and dow_ok) if dom_star or dow_star else (dom_ok or dow_ok)):
            continue
        for h in sorted(hours):
            for m in sorted(minutes):
                at = day * 86400 + h * 3600 + m * 60
                if at >= first:
                    return at
    return None


@PROPS
@given(specs(), starts)
def test_next_fire_is_the_first_matching_minute(spec, t):
    text, ref = spec
    assert nextrun.next_fire(cron.parse(text), t) == reference_next(ref, t), text


def test_a_start_with_step_one_runs_to_the_end_of_the_range():
    """'5/15' means 5-59/15 (cron.py says so); '5/1' must then mean 5-59, not just 5."""
    assert cron.parse("5/1 * * * *") == cron.parse("5-59 * * * *")


@PROPS
@given(specs(), st.integers(0, LATEST), st.integers(1, 5))
def test_successive_fires_are_increasing_matches(spec, t, n):
    text, ref = spec
    p = cron.parse(text)
    for _ in range(n):
        nxt = nextrun.next_fire(p, t)
        if nxt is None:
            break
        assert nxt > t and nxt % 60 == 0 and nxt == reference_next(ref, t)
        t = nxt


@st.composite
def broken_specs(draw):
    """(spec, words its error must contain): one field broken in one way."""
    parts = [draw(field(*f))[0] for f in FIELDS]
    i = draw(st.integers(0, 4))
    lo, hi, _ = FIELDS[i]
    how = draw(st.sampled_from(["high", "low", "backwards", "step0", "empty", "word", "count"]))
    if how == "count":
        n = draw(st.sampled_from([1, 2, 3, 4, 6, 7]))
        assume(len(" ".join((parts * 2)[:n])) <= limits.MAX_SPEC_LEN)
        return " ".join((parts * 2)[:n]), "not understood"
    if how == "low" and lo == 0:
        how = "high"
    bad, words = {
        "high": (str(draw(st.integers(hi + 1, 999))), "out of range"),
        "low": (str(lo - 1), "out of range"),
        "backwards": ("%d-%d" % (hi, lo), "runs backwards"),
        "step0": ("*/0", "must be a whole number of 1 or more"),
        "empty": (parts[i] + ",", "empty item"),
        "word": (draw(st.text(string.ascii_letters, min_size=1, max_size=5)
                      .filter(lambda w: w.upper() not in MONTHS + DAYS)), "is not a number"),
    }[how]
    parts[i] = bad
    assume(len(" ".join(parts)) <= limits.MAX_SPEC_LEN)
    return " ".join(parts), words


@PROPS
@given(broken_specs())
def test_broken_specs_raise_value_error_saying_what_is_wrong(case):
    text, words = case
    try:
        cron.parse(text)
    except ValueError as e:
        assert words in str(e), (text, str(e))
    else:
        raise AssertionError(f"{text!r} was accepted")


DEVICE_RUN = r"""
import json
from wisp import cron, nextrun
for line in open("cases.json"):
    c = json.loads(line)
    try:
        p = cron.parse(c["spec"])
        print(json.dumps(["ok", list(p), nextrun.next_fire(p, c["t"]) if not nextrun.one_shot(p) else None]))
    except ValueError as e:
        print(json.dumps(["ValueError", str(e)]))
    except Exception as e:
        print(json.dumps(["CRASH", type(e).__name__, str(e)]))
"""
cronish = st.text(alphabet=string.digits + "*/-, @LJANFEBSUNMONeveryinat:T" + "\u00e9\u0661\u00b2\t", max_size=40)


def test_the_device_computes_the_same_times_and_refuses_junk_with_value_error(tmp_path):
    """One micropython process: 200 valid specs give CPython's times, 200 junk specs only
    ValueError (the scheduler catches that one kind and tells the user)."""
    cfg = settings(max_examples=BATCH, deadline=None, database=None)
    valid = collect(st.tuples(specs(), st.integers(0, LATEST)), BATCH, cfg)
    junk = collect(cronish | st.text(max_size=70), BATCH, cfg)
    cases = [{"spec": s[0], "t": t} for s, t in valid] + [{"spec": j, "t": 0} for j in junk]
    out = run_batch(tmp_path, DEVICE_RUN, cases)
    assert len(out) == len(cases)
    for (spec, t), got in zip(valid, out, strict=False):
        p = cron.parse(spec[0])
        assert got == ["ok", list(p), nextrun.next_fire(p, t)], spec[0]
    junk_out = zip(cases[len(valid):], out[len(valid):], strict=True)
    crashes = [(c["spec"], got) for c, got in junk_out if got[0] == "CRASH"]
    assert crashes == []
    assert all(got[1] for got in out if got[0] == "ValueError")
