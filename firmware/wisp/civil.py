# Proleptic Gregorian calendar math on plain integers (H. Hinnant's days_from_civil), so
# schedule and timezone results never depend on the host's TZ or on the port's time module.
# "Seconds" here count from 1970-01-01 00:00 of whatever clock is meant (UTC or local).


def is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_in_month(y, m):
    if m == 2:
        return 29 if is_leap(y) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the date y-m-d."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of day number z (days since 1970-01-01)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def weekday(z):
    """0 = Sunday ... 6 = Saturday, as cron and POSIX TZ rules count (1970-01-01 was a Thursday)."""
    return (z + 4) % 7


def seconds(y, mo, d, h=0, mi=0, s=0):
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def fields(t):
    """(year, month, day, hour, minute, second, weekday) of seconds t."""
    t = int(t)
    z, sec = t // 86400, t % 86400
    y, mo, d = civil_from_days(z)
    return y, mo, d, sec // 3600, sec % 3600 // 60, sec % 60, weekday(z)


def iso(t, with_seconds=True):
    f = fields(t)
    if with_seconds:
        return "%04d-%02d-%02dT%02d:%02d:%02d" % f[:6]
    return "%04d-%02d-%02dT%02d:%02d" % f[:5]
