# Schedule specs as pure functions, no state and no I/O (like micropython-async sched/cron.py):
# parse() turns a spec into a compact tuple; wisp/nextrun.py finds when it fires (next_fire). The
# two are apart so that a firing job loads no parser: the build inlines the field numbers below
# (tools/constfold.py), and nextrun never imports this module on the device.
# Specs: 5-field cron, "@daily"-style macros, "every <N>s|m|h", "at <local ISO time>", "in <N>s|m|h".
# Times are seconds since 1970-01-01 on the local wall clock (see wisp/civil.py); the caller
# converts to and from UTC with wisp/tz.py.
from micropython import const

from wisp import limits

CRON = const(0)   # (CRON, minutes, hours, days, months, weekdays, flags): bit masks of allowed values
EVERY = const(1)  # (EVERY, seconds)
AT = const(2)     # (AT, local seconds): one shot
IN = const(3)     # (IN, seconds): one shot, relative to when the job is added

# The fields of a parsed spec by name: p[KIND] is one of the four above; p[VALUE] the seconds
# of EVERY and IN, or the local time of AT; CRON's bit masks follow, and p[FLAGS] last.
KIND = const(0)
VALUE = const(1)
FLAGS = const(6)
MINUTE_MASK = const(1)
HOUR_MASK = const(2)
DOM_MASK = const(3)
MONTH_MASK = const(4)
DOW_MASK = const(5)

DOM_STAR = const(1)   # flags: day-of-month field starts with '*' (Vixie cron's day rule)
DOW_STAR = const(2)   # flags: day-of-week field starts with '*'
HOUR_STAR = const(4)  # flags: hour field starts with '*' (job runs by the wall clock in a DST overlap)

# The name and unit tables are plain strings scanned at parse time: as tuples and dicts of short
# strings they would cost ~40 interned strings and their objects for as long as cron is loaded.
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC "  # 4 characters per name
_DAYS = "SUN MON TUE WED THU FRI SAT "
# name, lowest, highest, names (index 0 = lowest value)
_FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day-of-month", 1, 31, None),
           ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS))
_MACROS = """
@yearly 0 0 1 1 *
@annually 0 0 1 1 *
@monthly 0 0 1 * *
@weekly 0 0 * * 0
@daily 0 0 * * *
@midnight 0 0 * * *
@hourly 0 * * * *
"""
_UNITS = ((1, " s sec secs second seconds "), (60, " m min mins minute minutes "),
          (3600, " h hr hrs hour hours "))
_HELP = "use 5 cron fields like '*/5 7-9 * * 1-5', 'every 10m', 'at 2026-05-01T07:30' or 'in 20m'"


def _value(text, field):
    name, lo, hi, names = field
    at = names.find(text.upper() + " ") if names and len(text) == 3 else -1
    if at % 4 == 0:  # -1 (not found) never divides: a name starts every 4th character
        return lo + at // 4
    if not text.isdigit():
        raise ValueError("cron: %s field '%s' is not a number%s"
                         % (name, text, " or a name like " + names[4:7] if names else ""))
    v = int(text)
    if not lo <= v <= hi:
        raise ValueError("cron: %s field '%s' out of range %d-%d" % (name, text, lo, hi))
    return v


def _field(text, field):
    name, lo, hi, _names = field
    mask = 0
    for item in text.split(","):
        rng, step = item, 1
        if "/" in item:
            rng, s = item.split("/", 1)
            if not s.isdigit() or int(s) < 1:
                raise ValueError("cron: %s field step '%s' must be a whole number of 1 or more" % (name, s))
            step = min(int(s), 64)  # a longer step only picks the start; range() needs a machine word
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = rng.split("-", 1)
            a, b = _value(a or rng, field), _value(b or rng, field)  # '-5': name the item, not ''
            if a > b:
                raise ValueError("cron: %s field range '%s' runs backwards" % (name, rng))
        elif rng:
            a = _value(rng, field)
            b = hi if "/" in item else a  # "5/15" means 5-59/15, so "5/1" is 5-59
        else:
            raise ValueError("cron: %s field '%s' has an empty item" % (name, text))
        for v in range(a, b + 1, step):
            mask |= 1 << v
    return mask


def _cron(text):
    parts = text.split()
    if len(parts) != 5:
        raise ValueError("schedule '%s' not understood: %s" % (text, _HELP))
    masks = [_field(p, f) for p, f in zip(parts, _FIELDS)]
    if masks[4] & 0x80:  # day-of-week 7 is Sunday too
        masks[4] = (masks[4] | 1) & 0x7F
    flags = ((DOM_STAR if parts[2][0] == "*" else 0) | (DOW_STAR if parts[4][0] == "*" else 0)
             | (HOUR_STAR if parts[1][0] == "*" else 0))
    return (CRON, masks[0], masks[1], masks[2], masks[3], masks[4], flags)


def _duration(text, word):
    text = text.strip()
    i = 0
    while i < len(text) and text[i].isdigit():
        i += 1
    key = " %s " % text[i:].strip().lower()  # spaces around: "m" must not match inside "min"
    unit = None
    for seconds, words in _UNITS:
        if key in words:
            unit = seconds
    if i == 0 or unit is None:
        raise ValueError("%s: '%s' must be a number with a unit s, m or h, like '%s 10m'" % (word, text, word))
    n = int(text[:i]) * unit
    if not 1 <= n <= limits.MAX_INTERVAL_S:
        raise ValueError("%s: '%s' must be between 1s and %dh" % (word, text, limits.MAX_INTERVAL_S // 3600))
    return n


def _num(text, lo, hi, what):
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ValueError("at: %s '%s' must be %d-%d" % (what, text, lo, hi))
    return int(text)


def parse_iso(text):
    """Local seconds of 'YYYY-MM-DDTHH:MM[:SS]' (a space may stand for the T)."""
    from wisp import civil  # only `at` specs need the calendar: a cron spec parses without it
    s = text.strip()
    if len(s) not in (16, 19) or s[4] != "-" or s[7] != "-" or s[10] not in "T " or s[13] != ":" \
            or (len(s) == 19 and s[16] != ":"):
        raise ValueError("at: '%s' must be a local time like 2026-05-01T07:30 or 2026-05-01T07:30:00" % s)
    y = _num(s[0:4], 1970, 2199, "year")
    mo = _num(s[5:7], 1, 12, "month")
    d = _num(s[8:10], 1, civil.days_in_month(y, mo), "day of %04d-%02d" % (y, mo))
    h = _num(s[11:13], 0, 23, "hour")
    mi = _num(s[14:16], 0, 59, "minute")
    sec = _num(s[17:19], 0, 59, "second") if len(s) == 19 else 0
    return civil.seconds(y, mo, d, h, mi, sec)


def parse(spec):
    """Compact tuple for a spec; raises ValueError with a readable message."""
    if not isinstance(spec, str):
        raise ValueError("schedule spec must be a string; " + _HELP)
    s = spec.strip()
    if not s or len(s) > limits.MAX_SPEC_LEN:
        raise ValueError("schedule spec must be 1-%d characters; %s" % (limits.MAX_SPEC_LEN, _HELP))
    low = s.lower()
    if low.startswith("every "):
        return (EVERY, _duration(s[6:], "every"))
    if low.startswith("in "):
        return (IN, _duration(s[3:], "in"))
    if low.startswith("at "):
        return (AT, parse_iso(s[3:]))
    if s[0] == "@":
        at = _MACROS.find("\n%s " % low)
        if at < 0:
            known = [line.split()[0] for line in _MACROS.split("\n") if line]
            raise ValueError("cron: unknown macro '%s'; known: %s" % (s, ", ".join(sorted(known))))
        s = _MACROS[at + len(low) + 2:_MACROS.find("\n", at + 1)]
    return _cron(s)
