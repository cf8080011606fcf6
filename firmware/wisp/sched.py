# The schedule runner: jobs persist in jobs.json (atomic writes), one task sleeps until the
# next job is due and hands it to fire(). Adding, removing and checking jobs live in
# wisp/sched_edit.py; loading them at boot and the device timezone (its one writer,
# set_device_tz) in wisp/sched_setup.py; spec, next-run and
# calendar math in the pure modules wisp/cron.py, nextrun.py, tz.py and civil.py. All of them
# are imported inside the methods that need them and dropped while the runner sleeps.
import asyncio
import time

from micropython import const

from wisp import limits, store, unload

CLOCK_VALID_AFTER = const(1704067200)  # 2024-01-01 UTC: an earlier clock was never set by NTP
TZ_STORE = "tz"                        # tz.json: the device timezone set by timezone_set
_MAX_SLEEP_S = const(60)    # wake at least this often to notice clock steps (NTP) and pending saves
_SAVE_EVERY_S = const(60)   # a job that fires again sooner is saved at most this often (flash wear)
_ERROR_PAUSE_S = const(10)  # after a failed step (heap short): runs come late, not missed;
                            # one job failing again and again is retried 10, 20, 40 s... later
_RETRY_CAP_S = const(3600)  # ...at most this far apart
# loaded only while jobs change or fire
_PURE = ("wisp.sched_setup", "wisp.sched_edit", "wisp.nextrun", "wisp.cron", "wisp.tz", "wisp.civil")
_UTC = (0, None, None, None, "UTC", None)  # tz.parse("UTC0"), the default zone: no wisp.tz needed
# time.time() counts from 1970 on the unix port but from 2000 on the ESP32 (MicroPython's docs of
# `time`: the unix, windows, webassembly, alif, mimxrt and rp2 ports use 1970, other embedded
# ports 2000; still so in v1.26). Everything here uses 1970.
_EPOCH_SHIFT = 946684800 if time.gmtime(0)[0] == 2000 else 0


def unix_time():
    return time.time() + _EPOCH_SHIFT


class Scheduler:
    # ---- public --------------------------------------------------------------------------
    def __init__(self, dev, fire, now=unix_time, store_path="jobs.json", log=print):
        self.dev = dev
        self.now = now
        self._store = store_path[:-5] if store_path.endswith(".json") else store_path  # wisp.store name
        self.path = self._store + ".json"
        self.saves = 0      # files written, to keep flash wear visible
        self._fire = fire   # async callback(job dict)
        self._log = log
        self._jobs = []     # dicts: name, spec, action, missed, next (UTC seconds), tz (optional)
        self._specs = {}    # name -> parsed spec
        self._zones = {}    # TZ string -> parsed
        self._wake = asyncio.Event()
        self._dirty = False
        self._saved_at = 0
        self._last_now = None
        self._clock_warned = False
        self._fails = {}    # name -> steps that failed in a row for that job
        self._stale = None  # the zone jobs.json's runs were timed in, when not the device's (sched_setup.load)
        from wisp import sched_setup
        sched_setup.load_tz(dev.config, log)
        sched_setup.load(self)

    def add(self, spec, action, name=None, tz=None, missed="skip", llm=0):
        """Store a job and return a copy of it; raises ValueError with a readable message.
        llm: the LLM added it, so its runs act for the LLM (wisp/confirm.py)."""
        from wisp import sched_edit
        return sched_edit.add(self, spec, action, name, tz, missed, llm)

    def remove(self, name):
        from wisp import sched_edit
        return sched_edit.remove(self, name)

    def jobs(self):
        return [dict(j) for j in sorted(self._jobs, key=lambda j: j["next"])]

    def retime(self, back=0):
        """Recompute next runs after a timezone change (cron and `at` jobs) or a clock step back
        (`back` s)."""
        from wisp import nextrun
        now = self.now()
        for job in self._jobs:
            job["next"] = nextrun.retimed(self._specs[job["name"]], self._zone(job), job["next"], now,
                                          back)
        self._save_logged()
        self._wake.set()

    def wake(self):
        """Look at the jobs now, e.g. right after NTP set the clock."""
        self._wake.set()

    def local_time(self, job=None, utc=None):
        """(local seconds, offset east of UTC, zone abbreviation) at utc (default: now) in the
        job's zone, or the device's when job is None."""
        utc = int(self.now() if utc is None else utc)
        z = self._zone(job)
        if z[1] is None:  # a fixed offset
            return utc + z[0], z[0], z[4]
        from wisp import tz as posix_tz
        off, abbr = posix_tz.offset(utc, z)
        return utc + off, off, abbr

    async def run(self):
        """Forever: fire due jobs, then sleep until the next one (or until jobs change)."""
        while True:
            self._wake.clear()
            try:
                due = self._step()
            except Exception as e:  # a bad job must not stop every other job
                self._log("schedule error: %s" % (e,))
                due = None
            for job in due or ():
                try:
                    await self._fire(job)
                except Exception as e:
                    self._log("schedule: job '%s' failed: %s" % (job["name"], e))
            if not due:
                # the pure modules are needed only while a job is added, fires or is retimed:
                # dropped before the sleep, they hold no heap between jobs (they reload in ms)
                for name in _PURE:
                    unload(name)
                try:
                    # after a failed step, not at once: a job still due would retry in a tight loop
                    await asyncio.wait_for_ms(self._wake.wait(), self._delay_ms() if due is not None
                                              else _ERROR_PAUSE_S * 1000)
                except asyncio.TimeoutError:
                    pass

    # ---- runner steps ----------------------------------------------------------------------
    def _step(self):
        now = self.now()
        if now < CLOCK_VALID_AFTER:
            if not self._clock_warned:
                self._log("schedule: clock not set (before 2024-01-01); jobs wait for NTP time")
                self._clock_warned = True
            return []
        if self._stale:  # retimed once the clock is set: from a 1970 clock every run would look missed
            self._log("schedule: %s was timed for the zone %s, the device's is %s; next runs recomputed"
                      % (self.path, self._stale, self.dev.config.get("tz", "UTC0")))
            self._stale = None
            self.retime()
        if self._last_now is not None and now < self._last_now - _MAX_SLEEP_S:
            self._log("schedule: clock stepped back %d s; recomputing next runs" % (self._last_now - now))
            self.retime(self._last_now - now)
        self._last_now = now
        due = self._take_due(now)
        if self._dirty and now - self._saved_at >= _SAVE_EVERY_S:
            self._save_logged()
        return due

    def _take_due(self, now):
        """Copies of the jobs to fire now; their next runs are set (or one-shots removed) first,
        so a crash while firing never runs a job twice."""
        if all(job["next"] > now for job in self._jobs):
            return []  # before the imports: nothing due, so cron and civil need not load
        from wisp import civil, nextrun
        due, keep, changed = [], [], False
        for job in self._jobs:
            nxt = job["next"]
            if nxt > now:
                keep.append(job)
                continue
            name = job["name"]
            try:  # first: a job whose step fails (heap short) neither runs nor holds up the others
                p = self._specs[name]
                one_shot = nextrun.one_shot(p)
                following = None if one_shot else nextrun.following(p, self._zone(job), nxt, now)
                self._fails.pop(name, None)
            except Exception as e:
                n = self._fails[name] = min(self._fails.get(name, 0) + 1, 10)  # 10 << 9 s is past the cap
                wait = min(_ERROR_PAUSE_S << n - 1, _RETRY_CAP_S)
                self._log("schedule error: job '%s': its next run could not be worked out (%r); trying again in %d s"
                          % (name, e, wait))
                job["next"] = int(now) + wait
                self._dirty = True
                keep.append(job)
                continue
            late = int(now - nxt)
            if late <= limits.MISSED_GRACE_S or job["missed"] == "once":
                run = dict(job)
                run["late_s"] = late
                due.append(run)
            else:
                self._log("schedule: job '%s' missed its run at %s UTC (%d s late); skipped"
                          % (name, civil.iso(nxt), late))
            if one_shot:
                changed = True
                continue
            job["next"] = following
            if following is None:
                self._log("schedule: job '%s' never fires again; removed" % name)
                changed = True
                continue
            keep.append(job)
            # its period, not the time left: a job every minute, fired a moment late, is saved now
            if following - nxt >= _SAVE_EVERY_S:
                changed = True
            else:
                self._dirty = True
        if changed:
            self._jobs = keep
            for name in list(self._specs):
                if not self._find(name):
                    del self._specs[name]
            self._save_logged()
        due.sort(key=lambda j: j["next"])
        return due

    def _delay_ms(self):
        now = self.now()
        d = _MAX_SLEEP_S
        if now >= CLOCK_VALID_AFTER:
            for job in self._jobs:
                d = min(d, job["next"] - now)
            if self._dirty:
                d = min(d, self._saved_at + _SAVE_EVERY_S - now)
        return max(1, int(d * 1000) + 1)

    # ---- time zones ------------------------------------------------------------------------
    def _zone(self, job):
        s = (job and job.get("tz")) or self.dev.config.get("tz", "UTC0")
        if s == "UTC0":
            return _UTC
        z = self._zones.get(s)
        if z is None:
            from wisp import tz as posix_tz
            if len(self._zones) > 4:
                self._zones = {}
            z = self._zones[s] = posix_tz.parse(s)
        return z

    # ---- storage ---------------------------------------------------------------------------
    def _find(self, name):
        for job in self._jobs:
            if job["name"] == name:
                return job
        return None

    def _save(self):
        # "tz": the device zone the runs are timed in. timezone_set writes tz.json before this file:
        # a cut between the two, or config.json's tz changed, shows at the next boot (sched_setup.load)
        store.save(self._store, {"v": 1, "tz": self.dev.config.get("tz", "UTC0"), "jobs": self._jobs})
        self.saves += 1
        self._dirty = False
        self._saved_at = self.now()

    def _save_logged(self):
        try:
            self._save()
        except OSError as e:
            self._dirty = True
            self._saved_at = self.now()  # retry in _SAVE_EVERY_S, not in a tight loop
            self._log("schedule error: could not save %s: %s" % (self.path, e))
