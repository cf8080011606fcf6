"""Duplicate llm/req handling. A device re-sends an unanswered request with the same id after its timeout.

Rule (docs/protocol.md): a duplicate of a request (device, id, round) that is still being answered by this
bridge is ignored, the running answer serves it; a duplicate of one this bridge answered within REPLAY_TTL_S
gets the same messages again (same seqs: no second model call, no new actions); anything else is answered
afresh (e.g. it was first handled by a bridge that died).
"""
from __future__ import annotations

import time
from collections import OrderedDict

REPLAY_TTL_S = 300.0  # longer than any device's re-send timeout
REPLAY_MAX = 2048  # answers kept for replay, oldest dropped first


class Dedupe:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._running: set[tuple] = set()
        self._done: OrderedDict[tuple, tuple[float, list[dict]]] = OrderedDict()

    def begin(self, key: tuple) -> str | list[dict]:
        """'new' (caller answers, then calls finish), 'running' (ignore), or the messages to publish again."""
        if key in self._running:
            return "running"
        hit = self._done.get(key)
        if hit and self._clock() - hit[0] <= REPLAY_TTL_S:
            return hit[1]
        self._running.add(key)
        return "new"

    def finish(self, key: tuple, messages: list[dict] | None) -> None:
        """messages None: do not replay (the next duplicate is answered afresh)."""
        self._running.discard(key)
        if messages is None:
            self._done.pop(key, None)
            return
        self._done[key] = (self._clock(), messages)
        self._done.move_to_end(key)
        while len(self._done) > REPLAY_MAX:
            self._done.popitem(last=False)
