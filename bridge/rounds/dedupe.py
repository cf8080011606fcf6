"""Duplicate llm/req handling. A device re-sends an unanswered request with the same id after its timeout.

Rule (docs/protocol.md): a duplicate of a request (device, id, round) that is still being answered by this
bridge is ignored, the running answer serves it; a duplicate of one this bridge answered within REPLAY_TTL_S
gets the same messages again (same seqs: no second model call, no new actions); anything else is answered
afresh (e.g. it was first handled by a bridge that died).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from enum import Enum

from bridge.rounds.outcome import Outcome

REPLAY_TTL_S = 300.0  # longer than any device's re-send timeout
REPLAY_MAX = 2048  # answers kept for replay, oldest dropped first


class Seen(Enum):
    NEW = "new"  # the caller answers it, then calls finish()
    RUNNING = "running"  # being answered now: ignore the duplicate


class Dedupe:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
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

    def finish(self, key: tuple, outcome: Outcome | None) -> None:
        """outcome None: do not replay (the next duplicate is answered afresh)."""
        self._running.discard(key)
        if outcome is None:
            self._done.pop(key, None)
            return
        self._done[key] = (self._clock(), outcome)
        self._done.move_to_end(key)
        while len(self._done) > REPLAY_MAX:
            self._done.popitem(last=False)
