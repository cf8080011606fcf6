"""Duplicate llm/req handling. A device re-sends an unanswered request with the same id after its timeout.

Rule (docs/protocol.md): a duplicate of a request (device, id, round) that is still being answered by this
bridge is ignored, the running answer serves it; a duplicate of one this bridge answered within REPLAY_TTL_S
gets the same messages again (same seqs: no second model call, no new actions); anything else is answered
afresh (e.g. it was first handled by a bridge that died).

With a shared store (pgstore.PgStore for bridges on many hosts, claims.Claims in the SQLite file of bridges on
one host), a request new to this bridge is also claimed there, so the rule holds across bridges: a re-send that
lands on another bridge while the first one still answers is ignored, and one that lands after the answer gets
that answer replayed. A claim lapses when its lease (the request's budget plus LEASE_GRACE_S) runs out, so the
re-send of a request whose bridge died is answered afresh.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from enum import Enum

from bridge.reasons import said
from bridge.rounds.outcome import Outcome, replay_outcome

log = logging.getLogger("wisp.bridge.rounds.dedupe")

REPLAY_TTL_S = 300.0  # longer than any device's re-send timeout
REPLAY_MAX = 2048  # answers kept for replay, oldest dropped first
LEASE_GRACE_S = 5.0  # a claim outlives the request's budget by this much (the bridge stops at its budget)


class Seen(Enum):
    NEW = "new"  # the caller answers it, then calls finish()
    RUNNING = "running"  # being answered now: ignore the duplicate


class Dedupe:
    """shared: the store every bridge claims requests in (PgStore, or the SQLite file's Claims), or None."""

    def __init__(self, clock=time.monotonic, shared=None):
        self._clock = clock
        self.shared = shared
        self._running: set[tuple] = set()
        self._done: OrderedDict[tuple, tuple[float, Outcome]] = OrderedDict()  # key -> (finished at, outcome)

    def begin(self, key: tuple) -> Seen | Outcome:
        """Seen.NEW, Seen.RUNNING, or the outcome of the earlier answer, whose messages are to be sent again."""
        if key in self._running:
            return Seen.RUNNING
        finished_at, outcome = self._done.get(key, (None, None))
        if outcome and self._clock() - finished_at <= REPLAY_TTL_S:
            return outcome
        self._running.add(key)
        return Seen.NEW

    async def claim(self, key: tuple, budget_s: float) -> Seen | Outcome:
        """begin(), then, for a request new here, its claim in the shared store (one query)."""
        seen = self.begin(key)
        if seen is not Seen.NEW or self.shared is None:
            return seen
        try:
            got = await self.shared.claim(key, budget_s + LEASE_GRACE_S)
        except Exception as e:  # the store is down: answering twice beats not answering
            log.error("claim of %s in the shared store failed, answering anyway: %s", key, said(e))
            return Seen.NEW
        if got is True:
            return Seen.NEW
        self._running.discard(key)
        if got is None:
            return Seen.RUNNING
        return replay_outcome(key, got)

    def finish(self, key: tuple, outcome: Outcome | None) -> None:
        """outcome None: do not replay (the next duplicate is answered afresh)."""
        if self.shared is not None and key in self._running:
            self.shared.release(key, outcome)
        self._running.discard(key)
        if outcome is None:
            self._done.pop(key, None)
            return
        self._done[key] = (self._clock(), outcome)
        self._done.move_to_end(key)
        while len(self._done) > REPLAY_MAX:
            self._done.popitem(last=False)
