"""The shared store of many bridges, in PostgreSQL: usage rows, today's spend per device (the budget every
bridge checks), and request claims (which bridge answers a request, and its answer for replay to a re-send).

Same interface as cost.CostStore. Writes go through a queue to one writer task that commits in batches, so a
request never waits on them; the budget check is one indexed query, and the claims of requests that arrive
together share one statement. Times in claims come from the server's clock, so bridges on machines with skewed
clocks agree on leases.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import asyncpg

from bridge import fastjson
from bridge.config import CostConfig
from bridge.cost import CostStore, StoreError, Totals, build_report, over_budget_text, utc_day
from bridge.reasons import said
from bridge.rounds.outcome import Outcome, answer_record

log = logging.getLogger("wisp.bridge.pgstore")

BATCH_MAX = 500  # rows per commit
BATCH_WAIT_S = 0.05  # the writer gathers rows and claims this long after the first: one transaction per batch
CLAIM_STATEMENTS = 2  # claim statements in flight at once: one slow statement does not hold up the next batch
POOL_MAX = 8  # connections per bridge: claims and budget checks of concurrent requests, the writer, reports
QUERY_TIMEOUT_S = 2.0  # a claim or budget check that takes longer is given up: the request is answered anyway
REPLAY_TTL_S = 300  # an answered claim is kept this long for replay (as rounds/dedupe.py REPLAY_TTL_S)
SWEEP_EVERY = 1000  # claims written between deletions of expired ones
NO_ROUND = -1  # the key column for a request without a round

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
  ts DOUBLE PRECISION NOT NULL, day TEXT NOT NULL, device TEXT NOT NULL, tier TEXT NOT NULL, req_id TEXT,
  tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost_usd DOUBLE PRECISION NOT NULL,
  estimated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS usage_day ON usage (day);
CREATE TABLE IF NOT EXISTS spend (
  device TEXT NOT NULL, day TEXT NOT NULL, usd DOUBLE PRECISION NOT NULL, PRIMARY KEY (device, day));
CREATE TABLE IF NOT EXISTS claims (
  device TEXT NOT NULL, req_id TEXT NOT NULL, round INTEGER NOT NULL, owner TEXT NOT NULL,
  until TIMESTAMPTZ NOT NULL, answer JSONB, PRIMARY KEY (device, req_id, round));
"""
# Take each claim when nobody holds it, its holder's lease ran out (a bridge that died or overran its budget), or
# its answer is older than the replay window (`until` is the lease while running, then the end of the window).
# RETURNING gives a row only for the requests this bridge now holds. One statement for a batch of requests.
_CLAIM = """
INSERT INTO claims AS c (device, req_id, round, owner, until)
SELECT t.device, t.req_id, t.round, $4, clock_timestamp() + make_interval(secs => t.lease)
FROM unnest($1::text[], $2::text[], $3::int[], $5::float8[]) AS t(device, req_id, round, lease)
ON CONFLICT (device, req_id, round) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until, answer = NULL
WHERE c.until < clock_timestamp()
RETURNING device, req_id, round"""
_ANSWERS = """
SELECT c.device, c.req_id, c.round, c.answer FROM claims c
JOIN unnest($1::text[], $2::text[], $3::int[]) AS t(device, req_id, round)
  ON c.device = t.device AND c.req_id = t.req_id AND c.round = t.round"""
# The writer's statements take a whole batch as arrays: one execution each, however many rows (executemany
# would execute once per row, which at hundreds of requests per second was most of the database's work).
_ADD_USAGE = """
INSERT INTO usage SELECT * FROM unnest($1::float8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                                       $7::int[], $8::float8[], $9::int[])"""
_ADD_SPEND = """
INSERT INTO spend AS s (device, day, usd) SELECT * FROM unnest($1::text[], $2::text[], $3::float8[])
ON CONFLICT (device, day) DO UPDATE SET usd = s.usd + EXCLUDED.usd"""
_DROP_CLAIMS = """
DELETE FROM claims c USING unnest($1::text[], $2::text[], $3::int[]) AS t(device, req_id, round)
WHERE c.device = t.device AND c.req_id = t.req_id AND c.round = t.round AND c.owner = $4"""
_KEEP_ANSWERS = """
UPDATE claims c SET answer = t.answer::jsonb, until = clock_timestamp() + make_interval(secs => $5::float8)
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS t(device, req_id, round, answer)
WHERE c.device = t.device AND c.req_id = t.req_id AND c.round = t.round AND c.owner = $6"""


def _where(url: str) -> str:
    """host:port/db of a URL, without the user and password."""
    return url.partition("://")[2].rpartition("@")[2]


CONNECT_TIMEOUT_S = 10.0  # at start: a database behind a firewall that drops its port answers nothing at all

# what a database that is down, restarting or too slow raises
STORE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PgStore:
    """on_record(tier name, tokens in, tokens out, usd) hears every record (the bridge's metrics).
    owner: this bridge's name in claims (host and pid)."""

    def __init__(self, cfg: CostConfig, owner: str, on_record: Callable[[str, int, int, float], None] | None = None):
        self.cfg, self.owner, self.on_record = cfg, owner, on_record
        self.path = cfg.url  # where the rows are, for messages
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._q: asyncio.Queue = asyncio.Queue()
        self._writer_task: asyncio.Task | None = None
        self._urgent = asyncio.Event()  # spend that a budget depends on is waiting: no batching delay
        self._pending: dict[tuple[str, str], float] = {}  # (device, day) -> USD recorded here, not yet committed
        self._seen_spend: dict[tuple[str, str], float] = {}  # (device, day) -> committed spend at the last check
        self._claims_written = 0
        self._claims: list[tuple[tuple, float, asyncio.Future]] = []  # waiting for the next claim statement
        self._claimers: set[asyncio.Task] = set()  # each sends what waits, one statement at a time
        self._seen_day_ts = time.time()

    async def start(self) -> PgStore:
        self._loop = asyncio.get_running_loop()
        try:
            # synchronous_commit off: a commit does not wait for its WAL flush. A database crash may lose the
            # last fraction of a second of usage rows and claims (a re-send then answered afresh), never corrupt.
            # min_size 0: connections are opened as requests need them, so a database that is down does not
            # make the pool retry (and log) in the background; requests then find out and carry on.
            self._pool = await asyncpg.create_pool(self.cfg.url, min_size=0, max_size=POOL_MAX,
                                                   timeout=CONNECT_TIMEOUT_S, command_timeout=QUERY_TIMEOUT_S,
                                                   reset=_keep_session,
                                                   server_settings={"synchronous_commit": "off"})
            async with self._pool.acquire() as db:
                # one bridge creates the tables; others starting at the same moment wait on the lock
                async with db.transaction():
                    await db.execute("SELECT pg_advisory_xact_lock(7074697370)")
                    await db.execute(_SCHEMA)
        except STORE_ERRORS as e:
            if self._pool:
                await self._pool.close()
            raise StoreError(f"cannot reach the shared store [cost] url ({_where(self.cfg.url)}): "
                             f"{said(e, CONNECT_TIMEOUT_S)}") from e
        self._writer_task = asyncio.create_task(self._writer())
        return self

    # --- usage and budgets ---

    def record(self, device: str, tier, req_id: str | None, tokens_in: int, tokens_out: int,
               estimated: bool = False) -> float:
        """Account one model turn; returns its cost in USD. The row is committed by the writer task."""
        now = time.time()
        cost = tier.cost_usd(tokens_in, tokens_out)
        day = utc_day(now)
        self._pending[(device, day)] = self._pending.get((device, day), 0.0) + cost
        self._q.put_nowait((now, day, device, tier.name, req_id, tokens_in, tokens_out, cost, int(estimated)))
        if cost > 0 and self.cfg.budget_for(device) > 0:
            self._urgent.set()  # other bridges check this spend before their next request: commit it now
        if self.on_record:
            self.on_record(tier.name, tokens_in, tokens_out, cost)
        return cost

    charge = CostStore.charge  # a round's spend, each tier through this store's record()

    def spent_today(self, device: str) -> float:
        """What every bridge committed at the last check, plus what this bridge recorded since."""
        key = (device, utc_day())
        return self._seen_spend.get(key, 0.0) + self._pending.get(key, 0.0)

    def over_budget(self, device: str) -> str | None:
        return over_budget_text(self.cfg.budget_for(device), device, self.spent_today(device))

    async def check_budget(self, device: str) -> str | None:
        """over_budget() with today's spend of all bridges read from the database (one indexed row)."""
        if self.cfg.budget_for(device) <= 0:
            return None
        day = utc_day()
        try:
            async with self._pool.acquire(timeout=QUERY_TIMEOUT_S) as db:
                usd = await db.fetchval("SELECT usd FROM spend WHERE device = $1 AND day = $2", device, day)
            if day != utc_day(self._seen_day_ts):
                self._seen_spend.clear()  # a new UTC day: yesterday's figures are no use
            self._seen_day_ts = time.time()
            self._seen_spend[(device, day)] = usd or 0.0
        except STORE_ERRORS as e:  # judged on what this bridge saw last
            log.error("budget check for %s on the shared store failed: %s", device, said(e, QUERY_TIMEOUT_S))
        return self.over_budget(device)

    def totals(self, by: str = "device", day: str | None = None) -> list[Totals]:
        col = {"device": "device", "tier": "tier"}[by]
        rows = self._call(self._fetch(f"SELECT {col}, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) "
                                      "FROM usage WHERE day = $1 GROUP BY 1 ORDER BY 1", day or utc_day()))
        return [Totals(*row) for row in rows]

    def usage_report(self, day: str, days: int) -> dict:
        """GET /api/usage from a worker thread: the queries run on the bridge's loop."""
        self.flush()
        rows = self._call(self._fetch("SELECT device, tier, COUNT(*), SUM(tokens_in), SUM(tokens_out), "
                                      "SUM(cost_usd) FROM usage WHERE day = $1 GROUP BY 1, 2 ORDER BY 1, 2", day))
        daily = self._call(self._fetch(
            "SELECT day, COUNT(*), SUM(cost_usd) FROM usage WHERE day <= $1 "
            "AND day > to_char($1::date - $2::int, 'YYYY-MM-DD') GROUP BY 1 ORDER BY 1", day, days))
        return build_report(self.cfg, day, [tuple(r) for r in rows], [tuple(r) for r in daily], days)

    async def _fetch(self, sql: str, *args) -> list:
        async with self._pool.acquire() as db:
            return await db.fetch(sql, *args)

    def _call(self, coro):
        """Run a coroutine on the bridge's loop from another thread (reports run in worker threads)."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            coro.close()
            raise RuntimeError("PgStore reports block: call them from a worker thread (asyncio.to_thread)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def flush(self, timeout_s: float = 5.0) -> None:
        """From a thread other than the loop's: wait until everything recorded so far is committed."""
        self._call(self.aflush())

    async def aflush(self) -> None:
        done = asyncio.Event()
        self._q.put_nowait(done)
        await done.wait()

    # --- claims ---

    async def claim(self, key: tuple, lease_s: float) -> bool | dict | None:
        """True: this bridge now answers the request. None: another bridge is answering it. A dict: the answer
        another bridge gave ({"sent": [...], "reason": ..., "class": ...}), to be replayed.

        A claim goes out at once unless CLAIM_STATEMENTS are running; requests that arrive meanwhile go together
        in the next statement (the database's round trip, not a timer, sets the batch: no wait at low rates, one
        statement for many requests at high ones)."""
        fut = self._loop.create_future()
        self._claims.append((key, float(lease_s), fut))
        if len(self._claimers) < CLAIM_STATEMENTS:
            task = asyncio.create_task(self._claim_batches())
            self._claimers.add(task)
            task.add_done_callback(self._claimers.discard)
        return await fut

    async def _claim_batches(self) -> None:
        while self._claims:
            batch, self._claims = self._claims, []
            try:
                results = await self._claim_batch([(k, lease) for k, lease, _ in batch])
            except Exception as e:  # the store is down or slow: each request hears of it (dedupe.py decides)
                results = [e] * len(batch)
            except asyncio.CancelledError:  # the bridge stops: nobody waits for a statement that will not come
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(RuntimeError("claim not sent: the bridge is stopping"))
                raise
            for (_, _, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def _claim_batch(self, batch: list[tuple[tuple, float]]) -> list[bool | dict | None]:
        keys = [(d, r, NO_ROUND if n is None else n) for (d, r, n), _ in batch]
        if len(set(keys)) < len(keys):  # one statement cannot claim a row twice; Dedupe never asks so, but
            return [x for k in batch for x in await self._claim_batch([k])]  # should it, one by one
        cols = _columns(keys, 3)
        async with self._pool.acquire(timeout=QUERY_TIMEOUT_S) as db:
            held = {tuple(r) for r in await db.fetch(_CLAIM, *cols, self.owner, [lease for _, lease in batch])}
            self._claims_written += len(held)
            if self._claims_written // SWEEP_EVERY != (self._claims_written - len(held)) // SWEEP_EVERY:
                self._q.put_nowait("sweep")
            others = [k for k in keys if k not in held]
            answers = {}
            if others:
                rows = await db.fetch(_ANSWERS, *_columns(others, 3))
                answers = {(r[0], r[1], r[2]): r[3] for r in rows}
        return [True if k in held else json.loads(answers[k]) if answers.get(k) else None for k in keys]

    def release(self, key: tuple, outcome: Outcome | None) -> None:
        """The request is answered: keep the answer for replay, or (None) let the next re-send be answered afresh."""
        device, req_id, round_ = key
        round_ = NO_ROUND if round_ is None else round_
        if outcome is None:
            self._q.put_nowait(("release", device, req_id, round_, None))
            return
        self._q.put_nowait(("release", device, req_id, round_, fastjson.dumps(answer_record(outcome)).decode()))

    # --- the writer ---

    async def _writer(self) -> None:
        while True:
            items = [await self._q.get()]
            if self._may_wait(items[0]) and not self._urgent.is_set():
                try:  # rows and claims of concurrent requests join this transaction
                    await asyncio.wait_for(self._urgent.wait(), BATCH_WAIT_S)
                except TimeoutError:
                    pass
            self._urgent.clear()
            while len(items) < BATCH_MAX and not self._q.empty():
                items.append(self._q.get_nowait())
            if None in items:
                items.remove(None)
                await self._write(items)
                return
            await self._write(items)

    def _may_wait(self, item) -> bool:
        """A flush mark or the end is not delayed; rows and claims may be (record() cuts the wait short)."""
        return item is not None and not isinstance(item, asyncio.Event)

    async def _write(self, items: list) -> None:
        rows = [i for i in items if isinstance(i, tuple) and i[0] != "release"]
        releases = [i[1:] for i in items if isinstance(i, tuple) and i[0] == "release"]
        try:
            async with self._pool.acquire() as db, db.transaction():
                if rows:
                    await db.execute(_ADD_USAGE, *_columns(rows, 9))
                    spend: dict[tuple[str, str], float] = {}
                    for r in rows:
                        spend[(r[2], r[1])] = spend.get((r[2], r[1]), 0.0) + r[7]
                    await db.execute(_ADD_SPEND, *_columns([(d, day, usd) for (d, day), usd in spend.items()], 3))
                last = {(d, r, n): answer for d, r, n, answer in releases}  # one row per claim, the latest
                dropped = [key for key, answer in last.items() if answer is None]
                kept = [(*key, answer) for key, answer in last.items() if answer]
                if dropped:
                    await db.execute(_DROP_CLAIMS, *_columns(dropped, 3), self.owner)
                if kept:
                    await db.execute(_KEEP_ANSWERS, *_columns(kept, 4), float(REPLAY_TTL_S), self.owner)
                if "sweep" in items:
                    await db.execute("DELETE FROM claims WHERE until < clock_timestamp() - interval '1 minute'")
            for r in rows:  # committed: now part of what every bridge sees
                key = (r[2], r[1])
                self._seen_spend[key] = self._seen_spend.get(key, 0.0) + r[7]
        except STORE_ERRORS as e:  # a database outage must not take requests down with it
            log.error("shared store: %d usage row(s) and %d claim(s) lost: %s", len(rows), len(releases), said(e))
        finally:
            for r in rows:
                key = (r[2], r[1])
                left = self._pending.get(key, 0.0) - r[7]
                if left > 1e-12:
                    self._pending[key] = left
                else:
                    self._pending.pop(key, None)
            for i in items:
                if isinstance(i, asyncio.Event):
                    i.set()

    async def aclose(self) -> None:
        if self._writer_task:
            self._q.put_nowait(None)
            await asyncio.wait_for(self._writer_task, 10)
        if self._pool:
            await self._pool.close()


def _columns(rows: list[tuple], n: int) -> list[list]:
    """Rows as n column lists, the arrays the batch statements unnest."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(n)]


async def _keep_session(db) -> None:
    """Handing a connection back to the pool: nothing to reset (no session state is ever set), so no
    `RESET ALL` round trip per query, which cost as much as the query itself."""
