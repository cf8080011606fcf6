# When a job runs next, in UTC: a parsed spec (wisp/cron.py) on the wall clock of a time zone
# with DST (wisp/tz.py). Pure functions, no state and no I/O, like cron.py; property-tested
# against a minute-by-minute walk (tests/props/test_nextrun_props.py). The runner that keeps
# the jobs and sleeps is wisp/sched.py. z: a parsed zone (tz.parse); times are seconds since 1970.
# A fixed-offset zone (z[1] None: UTC0, the default) needs no wisp.tz: it is loaded only for DST.
from micropython import const

from wisp import civil, cron  # cron for its field numbers, which the build inlines (tools/constfold.py)

_SEGMENTS = const(24)  # DST stretches a cron search may cross (8 years of "29 Feb" = 16 changes)
_SEARCH_DAYS = const(2928)  # 8 years: long enough for "29 Feb" across a century year (2096 -> 2104)
_RERUN_BACK_S = const(10800)  # a clock stepped back less than this reruns no cron job (as Vixie cron)


def first(p, z, now):
    """The first run of a new job after UTC now, or None (an `at` time already past, a cron
    date that never comes)."""
    kind = p[cron.KIND]
    if kind == cron.AT:
        u = _local_to_utc(p[cron.VALUE], z)
        return u if u > now else None
    if kind == cron.CRON:
        return cron_after(p, z, now)
    return int(now) + p[cron.VALUE]


def following(p, z, last, now):
    """The run after the one due at UTC `last`, seen at UTC now (a repeating spec)."""
    if p[cron.KIND] == cron.EVERY:  # keep the phase: the first slot of the old grid after now
        every = p[cron.VALUE]
        return last + (int(now - last) // every + 1) * every
    return cron_after(p, z, now)


def retimed(p, z, nxt, now, back=0):
    """A job's next run after its zone changed, or after the clock stepped back `back` s."""
    kind = p[cron.KIND]
    if kind == cron.CRON:  # a small step back keeps the next run: what ran already runs not again
        return nxt if 0 < back < _RERUN_BACK_S else cron_after(p, z, now) or nxt
    if kind == cron.AT:  # the same wall-clock time in the new zone
        return _local_to_utc(p[cron.VALUE], z)
    if back and kind == cron.EVERY:
        return int(now) + p[cron.VALUE]
    return nxt


def _local_to_utc(local, z):
    if z[1] is None:
        return local - z[0]
    from wisp import tz as posix_tz
    return posix_tz.local_to_utc(local, z)


def cron_after(p, z, after):
    """UTC of the first cron match after UTC `after`, or None. The search walks the stretches
    of constant UTC offset, because the wall clock jumps at DST changes:
    - spring forward: a match in the skipped hour runs shifted by the jump (02:30 -> 03:30);
    - fall back: jobs with '*' hours run in both passes of the repeated hour (by the wall
      clock); jobs pinned to an hour ran in the first pass and skip the second.
    A search that starts within a jump after a change (a job fired at 03:00 for 02:00, or was
    late into the second pass) reads the clock as before it, so the runs are the same from
    wherever the search starts."""
    after = int(after)
    if z[1] is None:  # a fixed offset: one stretch
        local = next_fire(p, after + z[0])
        return None if local is None else local - z[0]
    from wisp import tz as posix_tz
    seg = after
    off = posix_tz.offset(seg, z)[0]
    j = off - posix_tz.offset(seg - abs(z[1] - z[0]), z)[0]  # > 0: in a gap's jump, < 0: a second pass
    if j > 0 or j and pinned_hour(p):
        off -= j
        seg -= abs(j)  # before the change, so that the loop meets it
    from_local = after + off
    for _ in range(_SEGMENTS):
        change = posix_tz.next_change(seg, z)
        local = next_fire(p, from_local)
        if local is None:
            return None
        u = local - off
        if change is None or u < change:
            return u
        off2 = posix_tz.offset(change, z)[0]
        if off2 > off and local < change + off2:  # in the gap; unless the new stretch has an earlier match
            nxt = next_fire(p, max(change - 1, after) + off2)
            return u if nxt is None else min(u, nxt - off2)
        if off2 < off and pinned_hour(p):
            from_local = change + off - 1  # pinned: skip the repeated local times
        else:
            from_local = max(change - 1, after) + off2
        seg, off = change, off2
    return None


def one_shot(p):
    return p[cron.KIND] in (cron.AT, cron.IN)


def pinned_hour(p):
    """A CRON spec whose hour field is not '*': in a DST overlap it runs in the first pass only."""
    return not p[cron.FLAGS] & cron.HOUR_STAR


def _first(mask, start, stop):
    for v in range(start, stop + 1):
        if mask >> v & 1:
            return v
    return None


def _day_ok(p, day, d):
    dom = p[cron.DOM_MASK] >> d & 1
    dow = p[cron.DOW_MASK] >> civil.weekday(day) & 1
    flags = p[cron.FLAGS]
    if flags & cron.DOM_STAR or flags & cron.DOW_STAR:  # one side unrestricted: both must match
        return dom and dow
    return dom or dow  # both restricted: either matches (standard cron)


def next_fire(p, t):
    """The first local time strictly after local time t when spec p fires, or None (never, or
    a one-shot already past). EVERY and IN specs simply add their interval to t."""
    kind = p[cron.KIND]
    if kind == cron.EVERY or kind == cron.IN:
        return t + p[cron.VALUE]
    if kind == cron.AT:
        return p[cron.VALUE] if p[cron.VALUE] > t else None
    t = int(t) // 60 * 60 + 60
    day, sec = t // 86400, t % 86400
    h, m = sec // 3600, sec % 3600 // 60
    end = day + _SEARCH_DAYS
    while day <= end:
        y, mo, d = civil.civil_from_days(day)
        if not p[cron.MONTH_MASK] >> mo & 1:  # whole month excluded: jump to the 1st of the next one
            day = civil.days_from_civil(y + mo // 12, mo % 12 + 1, 1)
            h = m = 0
            continue
        if _day_ok(p, day, d):
            hh = _first(p[cron.HOUR_MASK], h, 23)
            while hh is not None:
                mm = _first(p[cron.MINUTE_MASK], m if hh == h else 0, 59)
                if mm is not None:
                    return day * 86400 + hh * 3600 + mm * 60
                hh = _first(p[cron.HOUR_MASK], hh + 1, 23)
        day += 1
        h = m = 0
    return None
