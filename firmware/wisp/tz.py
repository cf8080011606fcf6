# POSIX TZ strings ("CET-1CEST,M3.5.0,M10.5.0/3") as pure functions: the device has no tz
# database, so the string carries the offsets and DST rules. Offsets here are seconds EAST of
# UTC (POSIX writes them west: "CET-1" is UTC+1). A local time in the spring-forward gap maps
# forward (02:30 -> 03:30); one in the fall-back overlap maps to its first occurrence.
from wisp import civil, limits

_DEFAULT_RULE_TIME = 7200  # POSIX: a rule without /time switches at 02:00
_HELP = "like 'CET-1CEST,M3.5.0,M10.5.0/3', 'EST5EDT,M3.2.0,M11.1.0' or 'UTC0'"


class _Reader:
    def __init__(self, s):
        self.s, self.i = s, 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def take_while(self, ok):
        j = self.i
        while self.i < len(self.s) and ok(self.s[self.i]):
            self.i += 1
        return self.s[j:self.i]

    def fail(self, why):
        raise ValueError("tz: '%s' %s (at character %d)" % (self.s, why, self.i + 1))


def _name(r):
    if r.peek() == "<":
        r.i += 1
        name = r.take_while(lambda c: c.isalpha() or c.isdigit() or c in "+-")
        if r.peek() != ">" or len(name) < 3:
            r.fail("has a bad <quoted> zone name")
        r.i += 1
        return name
    name = r.take_while(lambda c: c.isalpha())
    if len(name) < 3:
        r.fail("needs a zone name of 3+ letters")
    return name


def _hms(r, max_h, what):
    """[+-]hh[:mm[:ss]] as signed seconds."""
    sign = 1
    if r.peek() in ("+", "-"):
        sign = -1 if r.peek() == "-" else 1
        r.i += 1
    parts = []
    while True:
        digits = r.take_while(lambda c: c.isdigit())
        if not digits or len(digits) > 3:
            r.fail("needs a %s like 1, -5:30 or 2:00:00" % what)
        parts.append(int(digits))
        if r.peek() != ":" or len(parts) == 3:
            break
        r.i += 1
    if parts[0] > max_h or any(p > 59 for p in parts[1:]):
        r.fail("has a %s out of range" % what)
    while len(parts) < 3:
        parts.append(0)
    return sign * (parts[0] * 3600 + parts[1] * 60 + parts[2])


def _int(r, lo, hi, what):
    digits = r.take_while(lambda c: c.isdigit())
    if not digits or not lo <= int(digits) <= hi:
        r.fail("needs %s %d-%d" % (what, lo, hi))
    return int(digits)


def _rule(r):
    """(kind, a, b, c, seconds after local midnight): ('M', month, week, weekday) / ('J', n) / ('n', n)."""
    c = r.peek()
    if c == "M":
        r.i += 1
        m = _int(r, 1, 12, "a month")
        if r.peek() != ".":
            r.fail("needs Mm.w.d")
        r.i += 1
        w = _int(r, 1, 5, "a week")
        if r.peek() != ".":
            r.fail("needs Mm.w.d")
        r.i += 1
        rule = ["M", m, w, _int(r, 0, 6, "a weekday")]
    elif c == "J":
        r.i += 1
        rule = ["J", _int(r, 1, 365, "a Julian day"), 0, 0]
    elif c.isdigit():
        rule = ["n", _int(r, 0, 365, "a day"), 0, 0]
    else:
        r.fail("needs a DST rule Mm.w.d, Jn or n")
    t = _DEFAULT_RULE_TIME
    if r.peek() == "/":
        r.i += 1
        t = _hms(r, 167, "rule time")
    rule.append(t)
    return tuple(rule)


def parse(s):
    """(std offset, dst offset or None, start rule, end rule, std name, dst name); offsets east of UTC."""
    if isinstance(s, tuple):
        return s
    if not isinstance(s, str) or not s or len(s) > limits.MAX_TZ_LEN:
        raise ValueError("tz: must be a string of 1-%d characters %s" % (limits.MAX_TZ_LEN, _HELP))
    if s in ("UTC", "GMT"):
        return (0, None, None, None, s, None)
    if "/" in s.split(",")[0]:  # "Europe/Paris": the name an LLM knows, but no tz database here
        raise ValueError("tz: '%s' is a tz database name; give a POSIX TZ string %s" % (s, _HELP))
    r = _Reader(s)
    std_name = _name(r)
    if r.i == len(s):
        r.fail("needs an offset after the name (POSIX sign: CET-1 is UTC+1)")
    std = -_hms(r, 24, "UTC offset")
    if r.i == len(s):
        return (std, None, None, None, std_name, None)
    dst_name = _name(r)
    dst = std + 3600
    if r.peek() not in (",", ""):
        dst = -_hms(r, 24, "DST offset")
    if r.peek() != ",":
        r.fail("names a DST zone but gives no rules (add e.g. ,M3.2.0,M11.1.0)")
    r.i += 1
    start = _rule(r)
    if r.peek() != ",":
        r.fail("needs two DST rules separated by ','")
    r.i += 1
    end = _rule(r)
    if r.i != len(s):
        r.fail("has unexpected text")
    return (std, dst, start, end, std_name, dst_name)


def _rule_day(y, rule):
    kind, a, b, c = rule[0], rule[1], rule[2], rule[3]
    jan1 = civil.days_from_civil(y, 1, 1)
    if kind == "J":  # 1-365, February 29 never counted
        return jan1 + a - 1 + (1 if civil.is_leap(y) and a >= 60 else 0)
    if kind == "n":
        return jan1 + a
    first = civil.days_from_civil(y, a, 1)
    day = first + (c - civil.weekday(first)) % 7 + (b - 1) * 7
    if day >= first + civil.days_in_month(y, a):  # week 5 = the last such weekday
        day -= 7
    return day


def _changes(y, z):
    """UTC seconds of the year's two switches: (to DST, back to standard time)."""
    std, dst = z[0], z[1]
    return (_rule_day(y, z[2]) * 86400 + z[2][4] - std,  # rule times are in the time then in force
            _rule_day(y, z[3]) * 86400 + z[3][4] - dst)


def is_dst(utc_s, z):
    if z[1] is None:
        return False
    start, end = _changes(civil.fields(utc_s + z[0])[0], z)
    if start < end:  # northern hemisphere: DST inside the year
        return start <= utc_s < end
    return not end <= utc_s < start  # southern: DST across New Year


def next_change(utc_s, z):
    """The first UTC second after utc_s at which the offset changes, or None (no DST)."""
    z = parse(z)
    if z[1] is None:
        return None
    y = civil.fields(utc_s + z[0])[0]
    later = [t for t in _changes(y, z) + _changes(y + 1, z) if t > utc_s]
    return min(later) if later else None


def offset(utc_s, z):
    """Seconds east of UTC in force at utc_s, and the zone's abbreviation then."""
    z = parse(z)
    if is_dst(utc_s, z):
        return z[1], z[5]
    return z[0], z[4]


def local_to_utc(local_s, z):
    """UTC of a local wall time. Gap (spring forward): shifted forward by the jump, so 02:30
    becomes 03:30. Overlap (fall back): the first occurrence."""
    z = parse(z)
    if z[1] is None:
        return local_s - z[0]
    hi, lo = max(z[0], z[1]), min(z[0], z[1])
    if offset(local_s - hi, z)[0] == hi:
        return local_s - hi  # valid with the larger offset: the earlier instant
    return local_s - lo  # valid with the smaller offset, or in a gap: read with the pre-jump offset
