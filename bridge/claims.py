"""Request claims in the SQLite cost file, for bridges on one host that share it: which bridge answers a request,
and its answer for replay to a re-send (the rule of rounds/dedupe.py; pgstore.py keeps the same in PostgreSQL).

A lone bridge needs no claims, and claiming in the file costs a transaction or two per request, ~0.2 ms of CPU
here (a third of what a lone bridge spends on a request). So a bridge claims in the file only once another
uses it (filepeers.py). Until then it keeps its requests and answers in memory, and looks for a newcomer
at each request and every POLL_S while one runs; when one has come it writes them into the file, claims from
then on, and only then lets the newcomer take requests (joined()).

Claims are decided before the model call, so they must not wait behind the usage writer's batch (cost.py) nor
block the event loop: one thread of their own, with its own connection, takes every claim and release queued
while it was busy into one short transaction. The write lock is taken at the start of that transaction
(BEGIN IMMEDIATE) and waited for at most LOCK_WAIT_S; a file that stays locked or fails is reported to the
waiting requests, which are then answered anyway. Times are this host's clock, which every bridge sharing the
file reads.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from bridge import fastjson
from bridge.filepeers import FilePeers
from bridge.rounds.outcome import Outcome, answer_record

log = logging.getLogger("wisp.bridge.claims")

LOCK_WAIT_S = 2.0  # a claim waits this long for another writer of the file; then its request is answered anyway
# Pause between tries for the file's write lock, doubling up to the cap. SQLite's own busy handler sleeps 1, 2, 5,
# 10... ms, which with two bridges claiming at 400 req/s made the slowest requests wait ~18 ms; a claim holds
# the lock for ~0.1 ms.
LOCK_RETRY_S, LOCK_RETRY_MAX_S = 0.0002, 0.005
CLAIM_WAIT_S = LOCK_WAIT_S + 1.0  # a request waits this long for its claim's verdict, whatever the thread does
REPLAY_TTL_S = 300.0  # an answered claim is kept this long for replay (as rounds/dedupe.py REPLAY_TTL_S)
SWEEP_EVERY = 1000  # claims taken between deletions of expired ones
NO_ROUND = -1  # the key column for a request without a round
BATCH_MAX = 500  # claims and releases per transaction
# A release (an answer to keep for replay) waits this long for a claim to share its transaction: half the
# transactions where requests come a few per second or more (a quarter less CPU in the file). A re-send landing
# meanwhile is ignored as still running, as with pgstore.py's batches.
RELEASE_WAIT_S = 0.05
POLL_S = 0.25  # while a lone bridge answers, it looks this often for another one arriving on its file
JOIN_WAIT_S = 10.0  # a bridge joining others waits at most this long for them to start claiming
KEEP_MAX = 2048  # answers a lone bridge keeps for the file (as rounds/dedupe.py REPLAY_MAX), oldest dropped

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
  device TEXT NOT NULL, req_id TEXT NOT NULL, round INTEGER NOT NULL, owner TEXT NOT NULL,
  until REAL NOT NULL, answer TEXT, PRIMARY KEY (device, req_id, round));
"""
# Take the claim when nobody holds it, its holder's lease ran out (a bridge that died or overran its budget), or
# its answer is older than the replay window (`until` is the lease while running, then the end of the window).
# RETURNING gives a row only when this bridge now holds it.
_CLAIM = """
INSERT INTO claims AS c (device, req_id, round, owner, until) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (device, req_id, round) DO UPDATE SET owner = excluded.owner, until = excluded.until, answer = NULL
WHERE c.until < ?
RETURNING 1"""
_ANSWER = "SELECT answer FROM claims WHERE device = ? AND req_id = ? AND round = ?"
_KEEP_ANSWER = "UPDATE claims SET answer = ?, until = ? WHERE device = ? AND req_id = ? AND round = ? AND owner = ?"
_DROP = "DELETE FROM claims WHERE device = ? AND req_id = ? AND round = ? AND owner = ?"
_SWEEP = "DELETE FROM claims WHERE until < ?"


class Claims:
    """claim() and release() of rounds/dedupe.py's shared store, in the SQLite file at `path`; both are called
    on the bridge's event loop. owner: this bridge's name in claims (host and pid)."""

    def __init__(self, path: Path, owner: str):
        self.path, self.owner = path, owner
        self._peers = FilePeers(path)
        # while alone: what the file would hold, (device, id, round) -> until (time.time()), and the answers
        self._running: dict[tuple, float] = {}
        self._answered: OrderedDict[tuple, tuple[float, Outcome]] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None  # looks for a newcomer while a request runs
        self._q: queue.Queue = queue.Queue()
        self._taken = 0
        self._thread = threading.Thread(target=self._run, name="wisp-claims", daemon=True)
        self._thread.start()

    async def joined(self) -> None:
        """Before this bridge takes requests: wait until every other bridge on the file claims its requests
        (each writes the ones it answers into the file first), so that none of theirs is answered twice."""
        if not self._peers.alone and self._peers.others_arrived():
            log.info("another bridge uses %s: requests are claimed in it", self.path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_WAIT_S
        while self._peers.others_unclaimed():
            if loop.time() >= deadline:
                log.warning("another bridge on %s has not started claiming requests after %.0f s; going on",
                            self.path, JOIN_WAIT_S)
                return
            await asyncio.sleep(POLL_S / 5)

    async def claim(self, key: tuple, lease_s: float) -> bool | dict | None:
        """True: this bridge now answers the request. None: another bridge is answering it. A dict: the answer
        another bridge gave (outcome.answer_record), to be replayed. Raises when the file cannot say."""
        if self._peers.alone:
            if not self._running:
                self._peers.hold_unclaimed()
            if not self._peers.others_arrived():
                self._running[key] = time.time() + lease_s
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(POLL_S, self._look)
                return True
            self._start_claiming()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put(("claim", _row_key(key), float(lease_s), fut, loop))
        return await asyncio.wait_for(fut, CLAIM_WAIT_S)

    def release(self, key: tuple, outcome: Outcome | None) -> None:
        """The request is answered: keep the answer for replay, or (None) let the next re-send be answered afresh."""
        if self._peers.alone:
            self._running.pop(key, None)
            self._keep(key, outcome)
            if not self._running:
                if self._timer:
                    self._timer.cancel()
                    self._timer = None
                self._peers.drop_unclaimed()
            return
        record = None if outcome is None else fastjson.dumps(answer_record(outcome)).decode()
        self._q.put(("release", _row_key(key), record))

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop (from any thread: a pending _look() finds the peers closed)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout_s)
        self._peers.close()

    # --- alone ---

    def _keep(self, key: tuple, outcome: Outcome | None) -> None:
        self._answered.pop(key, None)
        now = time.time()
        if outcome is not None:
            self._answered[key] = (now + REPLAY_TTL_S, outcome)
        while self._answered and (len(self._answered) > KEEP_MAX or next(iter(self._answered.values()))[0] < now):
            self._answered.popitem(last=False)

    def _look(self) -> None:
        """Every POLL_S while a request runs unclaimed: has another bridge come?"""
        self._timer = None
        if not self._peers.alone or not self._running:
            return
        if self._peers.others_arrived():
            self._start_claiming()
        else:
            self._timer = asyncio.get_running_loop().call_later(POLL_S, self._look)

    def _start_claiming(self) -> None:
        """Another bridge uses the file: what this one answers and answered goes into it (the thread writes it
        before anything queued later), and every request is claimed from now on."""
        self._peers.alone = False
        if self._timer:
            self._timer.cancel()
            self._timer = None
        mine = [(key, until, None) for key, until in self._running.items()]
        mine += [(key, until, fastjson.dumps(answer_record(outcome)).decode())
                 for key, (until, outcome) in self._answered.items()]
        self._running, self._answered = {}, OrderedDict()
        self._q.put(("adopt", mine))

    # --- the thread ---

    def _run(self) -> None:
        db = None
        held: list[tuple] = []  # releases waiting to share the next claim's transaction
        held_until = 0.0
        while True:
            try:
                items = [self._q.get(timeout=max(0.0, held_until - time.monotonic()) if held else None)]
            except queue.Empty:
                items = []
            while len(items) < BATCH_MAX and items and items[-1] is not None:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            stop = bool(items) and items[-1] is None
            new = [i for i in items if i is not None]
            if not stop and new and all(i[0] == "release" for i in new) \
                    and (not held or time.monotonic() < held_until):
                # nobody waits on a release: it joins the next claim's transaction, or goes after RELEASE_WAIT_S
                if not held:
                    held_until = time.monotonic() + RELEASE_WAIT_S
                held += new
                continue
            work, held = held + new, []
            if work:
                try:
                    if db is None:
                        db = _connect(self.path)
                    results = self._write(db, work)
                except sqlite3.Error as e:  # locked too long, a full disk: answering beats not answering
                    log.error("claims in %s: %d claim(s) and release(s) not written: %s", self.path, len(work), e)
                    results = [e] * len(work)
                for item, result in zip(work, results, strict=True):
                    if item[0] == "claim":
                        _, _, _, fut, loop = item
                        try:
                            loop.call_soon_threadsafe(_settle, fut, result)
                        except RuntimeError:  # its loop has closed: nobody waits any more
                            pass
                    elif item[0] == "adopt":  # written (or not: then say so), either way the newcomer may go on
                        if isinstance(result, Exception):
                            log.error("another bridge uses %s, but the requests this one answers could not be "
                                      "written into it; a re-send of one may be answered twice", self.path)
                        else:
                            log.info("another bridge uses %s: requests are claimed in it from now on", self.path)
                        self._peers.drop_unclaimed()
            if stop:
                if db is not None:
                    db.close()
                return

    def _write(self, db: sqlite3.Connection, work: list[tuple]) -> list:
        """One transaction for the batch, in arrival order; a claim's verdict per item (None for the others)."""
        _begin(db)
        now = time.time()
        results: list = []
        try:
            for item in work:
                if item[0] == "claim":
                    _, key, lease, _, _ = item
                    if db.execute(_CLAIM, (*key, self.owner, now + lease, now)).fetchall():
                        self._taken += 1
                        results.append(True)
                        continue
                    row = db.execute(_ANSWER, key).fetchone()
                    results.append(json.loads(row[0]) if row and row[0] else None)
                    continue
                if item[0] == "release":
                    _, key, record = item
                    if record is None:
                        db.execute(_DROP, (*key, self.owner))
                    else:
                        db.execute(_KEEP_ANSWER, (record, now + REPLAY_TTL_S, *key, self.owner))
                else:  # "adopt": a lone bridge's requests, running (no record) or answered
                    for key, until, record in item[1]:
                        key = _row_key(key)
                        if db.execute(_CLAIM, (*key, self.owner, until, now)).fetchall() and record:
                            db.execute(_KEEP_ANSWER, (record, until, *key, self.owner))
                results.append(None)
            if self._taken >= SWEEP_EVERY:
                self._taken = 0
                db.execute(_SWEEP, (now - 60,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level None: the transactions are the explicit BEGIN IMMEDIATE ... COMMIT above; timeout 0: a
    # busy file is waited for by _begin(), not by SQLite's busy handler
    db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    wal_mode(db)  # as cost.py: readers never block the writers
    db.execute("PRAGMA synchronous=NORMAL")
    return db


WAL_WAIT_S = 10.0  # how long a bridge waits for another to finish turning a new file to WAL


def wal_mode(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode. Turning a new file to WAL takes it whole, and SQLite answers "database is locked"
    at once, without its busy wait, while another process does the same: two bridges started together on one
    new file (2 in 3 tries here) would have one refuse to start. The first one's switch takes milliseconds."""
    deadline = time.monotonic() + WAL_WAIT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin(db: sqlite3.Connection) -> None:
    """Take the file's write lock now (BEGIN IMMEDIATE: no reader turned writer finds it taken mid-transaction),
    trying again after short pauses while another writer holds it, for at most LOCK_WAIT_S."""
    deadline = time.monotonic() + LOCK_WAIT_S
    pause = LOCK_RETRY_S
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, LOCK_RETRY_MAX_S)


def _row_key(key: tuple) -> tuple:
    device, req_id, round_ = key
    return device, req_id, NO_ROUND if round_ is None else round_


def _settle(fut: asyncio.Future, result) -> None:
    if fut.done():  # the request stopped waiting (CLAIM_WAIT_S) and was answered anyway
        return
    if isinstance(result, Exception):
        fut.set_exception(result)
    else:
        fut.set_result(result)
