"""Tokens and money per request, device and tier, in SQLite; per-device daily budgets.

Writes go through a queue to one writer thread that commits in batches, so the event loop never waits on the
disk. Today's spend per device is kept in memory (seeded from the database at start) for the budget check.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import math
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from bridge import claims
from bridge.config import CostConfig
from bridge.rounds.outcome import Outcome

log = logging.getLogger("wisp.bridge.cost")

BATCH_MAX = 500  # rows per commit
# The writer gathers rows this long after the first one: one commit per batch, not per row. At 100 requests/s
# a commit every 50 ms cost ~6 % of the bridge's CPU per request; a crash may lose this much of usage rows
# (a clean stop, flush() and the usage views commit at once; budgets are judged from memory, not the file).
BATCH_WAIT_S = 0.5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
  ts REAL NOT NULL, day TEXT NOT NULL, device TEXT NOT NULL, tier TEXT NOT NULL, req_id TEXT,
  tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost_usd REAL NOT NULL, estimated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS usage_device_day ON usage (device, day);
"""


class Totals(NamedTuple):
    """One day's usage of one device or tier."""
    key: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float


_last_day: tuple[int, str] = (-1, "")  # (days since the epoch, its date): every request asks, few days change


def utc_day(ts: float | None = None) -> str:
    global _last_day
    t = time.time() if ts is None else ts
    day = int(t // 86400)  # Unix time has exactly 86,400 s per UTC day
    if day != _last_day[0]:
        _last_day = (day, time.strftime("%Y-%m-%d", time.gmtime(t)))
    return _last_day[1]


def seconds_to_next_day(ts: float | None = None) -> int:
    """Whole seconds until the next UTC day, when daily budgets reset (as utc_day counts days), rounded up."""
    t = time.time() if ts is None else ts
    return math.ceil(86400 - t % 86400)


class StoreError(Exception):
    """The configured store cannot be used; the bridge does not start without it."""


async def open_store(cfg: CostConfig, owner: str,
                     on_record: Callable[[str, int, int, float], None] | None = None):
    """The PostgreSQL store shared by many bridges when [cost] url is set, else the SQLite file, which bridges on
    one host may share."""
    if cfg.url:
        from bridge.pgstore import PgStore  # asyncpg only where it is used
        return await PgStore(cfg, owner, on_record).start()
    store = CostStore(cfg, on_record, owner)
    await store.claims.joined()  # other bridges on the file claim their requests before this one takes any
    return store


class CostStore:
    """on_record(tier name, tokens in, tokens out, usd) hears every record (the bridge's metrics)."""

    def __init__(self, cfg: CostConfig, on_record: Callable[[str, int, int, float], None] | None = None,
                 owner: str | None = None):
        self.cfg = cfg
        self.on_record = on_record
        self.path = Path(cfg.db)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(_SCHEMA + claims.SCHEMA)
                self._day = utc_day()
                self._spent = dict(db.execute("SELECT device, SUM(cost_usd) FROM usage WHERE day = ? "
                                              "GROUP BY device", (self._day,)).fetchall())
            db.close()
        except (OSError, sqlite3.Error) as e:  # a path that cannot be made or opened: say which, exit 2
            raise StoreError(f"cannot use the cost database {self.path} ([cost] db or WISP_COST_DB): "
                             f"{getattr(e, 'strerror', None) or e}") from None
        self._q: queue.Queue = queue.Queue()
        self._urgent = threading.Event()  # flush() or close(): commit now, do not wait out the batch
        self._thread = threading.Thread(target=self._writer, name="wisp-cost", daemon=True)
        self._thread.start()
        # bridges on this host that share the file claim requests in it (rounds/dedupe.py, claims.py)
        self.claims = claims.Claims(self.path, owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        claims.wal_mode(db)  # readers (reports, other bridges) do not block the writer
        # WAL + NORMAL: a commit does not wait for fsync; a power cut may lose the last commits, never corrupt
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def record(self, device: str, tier, req_id: str | None, tokens_in: int, tokens_out: int,
               estimated: bool = False) -> float:
        """Account one model turn; returns its cost in USD. Cheap: the row is written by the writer thread."""
        now = time.time()
        cost = tier.cost_usd(tokens_in, tokens_out)
        day = utc_day(now)
        if day != self._day:
            self._day, self._spent = day, {}
        self._spent[device] = self._spent.get(device, 0.0) + cost
        self._q.put((now, day, device, tier.name, req_id, tokens_in, tokens_out, cost, int(estimated)))
        if self.on_record:
            self.on_record(tier.name, tokens_in, tokens_out, cost)
        return cost

    def charge(self, outcome: Outcome) -> None:
        """Account every tier a device round used; sets each one's cost_usd."""
        for s in outcome.spend:
            s.cost_usd = self.record(outcome.device, s.tier, outcome.req_id, s.tokens_in, s.tokens_out, s.estimated)

    def spent_today(self, device: str) -> float:
        if utc_day() != self._day:
            return 0.0
        return self._spent.get(device, 0.0)

    def over_budget(self, device: str) -> str | None:
        """A refusal for a device whose daily budget is used up, else None."""
        return over_budget_text(self.cfg.budget_for(device), device, self.spent_today(device))

    async def check_budget(self, device: str) -> str | None:
        """over_budget(), for callers that also work with the shared store (pgstore.PgStore.check_budget)."""
        return self.over_budget(device)

    def totals(self, by: str = "device", day: str | None = None) -> list[Totals]:
        """Usage per device or tier on one UTC day (today by default); reads what is committed."""
        col = {"device": "device", "tier": "tier"}[by]
        with self._connect() as db:
            rows = db.execute(f"SELECT {col}, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) FROM usage "
                              "WHERE day = ? GROUP BY 1 ORDER BY 1", (day or utc_day(),)).fetchall()
        db.close()
        return [Totals(*row) for row in rows]

    def usage_report(self, day: str, days: int) -> dict:
        """GET /api/usage: tokens and cost per device and tier on `day`, and per day over the `days` up to it."""
        self.flush()  # what was recorded a moment ago is in the file
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT device, tier, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) "
                              "FROM usage WHERE day = ? GROUP BY 1, 2 ORDER BY 1, 2", (day,)).fetchall()
            daily = db.execute("SELECT day, COUNT(*), SUM(cost_usd) FROM usage WHERE day <= ? "
                               "AND day > date(?, ?) GROUP BY 1 ORDER BY 1", (day, day, f"-{days} days")).fetchall()
        finally:
            db.close()
        return build_report(self.cfg, day, rows, daily, days)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything recorded so far is committed (tests, shutdown)."""
        done = threading.Event()
        self._q.put(done)
        self._urgent.set()
        done.wait(timeout_s)

    async def claim(self, key: tuple, lease_s: float) -> bool | dict | None:
        """The request's claim in the file (claims.Claims.claim)."""
        return await self.claims.claim(key, lease_s)

    def release(self, key: tuple, outcome: Outcome | None) -> None:
        self.claims.release(key, outcome)

    def close(self) -> None:
        self._q.put(None)
        self._urgent.set()
        self._thread.join(10)
        self.claims.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def _writer(self) -> None:
        db = self._connect()
        try:
            while True:
                item = self._q.get()
                if not isinstance(item, threading.Event) and item is not None:
                    self._urgent.wait(BATCH_WAIT_S)  # let the rows of concurrent requests join this commit
                self._urgent.clear()  # a flush() whose mark this batch misses sets it again: the next one is at once
                batch, marks, stop = [], [], False
                while True:
                    if item is None:
                        stop = True
                    elif isinstance(item, threading.Event):
                        marks.append(item)
                    else:
                        batch.append(item)
                    if len(batch) >= BATCH_MAX:
                        break
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    try:
                        with db:
                            db.executemany("INSERT INTO usage VALUES (?,?,?,?,?,?,?,?,?)", batch)
                    except sqlite3.Error as e:  # a full disk must not take requests down with it
                        log.error("cost database %s: %d row(s) lost: %s", self.path, len(batch), e)
                for m in marks:
                    m.set()
                if stop:
                    return
        finally:
            db.close()


def over_budget_text(budget: float, device: str, spent: float) -> str | None:
    """A refusal for a device whose daily budget is used up, else None."""
    if budget <= 0 or spent < budget:
        return None
    return (f"daily budget of ${budget:.2f} for device {device} is used up (${spent:.4f} spent today); "
            "it resets at 00:00 UTC")


def build_report(cfg: CostConfig, day: str, rows: list[tuple], daily: list[tuple], days: int = 1) -> dict:
    """GET /api/usage from (device, tier, requests, tokens in, tokens out, usd) rows and (day, requests, usd) of
    the `days` days up to `day`; `daily` names each of those days, with zeros for one without requests, so a
    chart of the last week has seven bars."""
    by_device: dict[str, dict] = {}
    by_tier: dict[str, dict] = {}
    for device, tier, n, t_in, t_out, usd in rows:
        for table, key in ((by_device, device), (by_tier, tier)):
            agg = table.setdefault(key, {"requests": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0})
            agg["requests"] += n
            agg["tokens_in"] += t_in
            agg["tokens_out"] += t_out
            agg["cost_usd"] += usd
    for device, agg in by_device.items():
        agg["budget_usd"] = cfg.budget_for(device) or None
    return {"day": day,
            "rows": [{"device": d, "tier": t, "requests": n, "tokens_in": i, "tokens_out": o, "cost_usd": usd}
                     for d, t, n, i, o, usd in rows],
            "by_device": by_device, "by_tier": by_tier,
            "total_usd": sum(a["cost_usd"] for a in by_tier.values()),
            "daily": [{"day": d, "requests": n, "cost_usd": usd} for d, (n, usd) in _every_day(day, days, daily)]}


def _every_day(day: str, days: int, daily: list[tuple]) -> list[tuple[str, tuple]]:
    """(date, (requests, usd)) for each of the `days` days up to `day`, oldest first."""
    known = {d: (n, usd) for d, n, usd in daily}
    last = datetime.date.fromisoformat(day)
    dates = [(last - datetime.timedelta(days=k)).isoformat() for k in range(days - 1, -1, -1)]
    return [(d, known.get(d, (0, 0.0))) for d in dates]
