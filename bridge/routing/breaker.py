"""Circuit breaker per tier: closed -> open after consecutive failures -> half-open (one probe) after a
cool-down -> closed on the probe's success, open again (longer cool-down) on its failure. Works with a single
deployment per tier: the probe is an ordinary request.
"""
from __future__ import annotations

import time
from collections.abc import Callable

FAILURES_TO_OPEN = 5  # consecutive failed attempts
COOL_DOWN_S = 5.0  # first cool-down; doubles after each failed probe
MAX_COOL_DOWN_S = 60.0


class Breaker:
    def __init__(self, clock: Callable[[], float] = time.monotonic, failures_to_open: int = FAILURES_TO_OPEN,
                 cool_down_s: float = COOL_DOWN_S):
        self._clock = clock
        self.failures_to_open = failures_to_open
        self.base_cool_down_s = cool_down_s
        self.cool_down_s = cool_down_s
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May an attempt start now? In half-open, exactly one probe is let through at a time."""
        if self.state == "open" and self._clock() - self.opened_at >= self.cool_down_s:
            self.state = "half-open"
        if self.state == "closed":
            return True
        if self.state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.state, self.failures, self._probing = "closed", 0, False
        self.cool_down_s = self.base_cool_down_s

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half-open":
            self.cool_down_s = min(self.cool_down_s * 2, MAX_COOL_DOWN_S)
            self._open()
        elif self.state == "closed" and self.failures >= self.failures_to_open:
            self._open()

    def abandoned(self) -> None:
        """An attempt ended without a verdict (cancelled hedge loser, budget over): free the probe slot."""
        self._probing = False

    def retry_in_s(self) -> float:
        return max(0.0, self.opened_at + self.cool_down_s - self._clock()) if self.state == "open" else 0.0

    def _open(self) -> None:
        self.state, self.opened_at, self._probing = "open", self._clock(), False
