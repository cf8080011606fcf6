"""Live statistics per tier: time to first output and tokens/s (EWMA and percentiles over a bounded window),
and the error rate over the last attempts. Fed by every attempt; read by the router and the /v1 API.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

WINDOW = 256  # samples kept per series: enough for a stable p99, bounded memory
EWMA_ALPHA = 0.2  # weight of the newest sample
MIN_SAMPLES = 8  # below this the router treats a tier's latency as unknown


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Series:
    def __init__(self) -> None:
        self.window: deque[float] = deque(maxlen=WINDOW)
        self.ewma: float | None = None
        # The window's samples in order, kept so by each add: the router reads percentiles on every attempt,
        # and sorting the window per new sample was a visible share of the bridge's CPU at hundreds of req/s.
        self._sorted: list[float] = []

    def add(self, x: float) -> None:
        if len(self.window) == WINDOW:  # the oldest sample leaves the window with this append
            del self._sorted[bisect_left(self._sorted, self.window[0])]
        self.window.append(x)
        insort(self._sorted, x)
        self.ewma = x if self.ewma is None else EWMA_ALPHA * x + (1 - EWMA_ALPHA) * self.ewma

    def p(self, q: float) -> float | None:
        if len(self.window) < MIN_SAMPLES:
            return None
        ordered = self._sorted
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class TierStats:
    def __init__(self) -> None:
        self.ttft_ms = Series()  # request sent -> first usable event (text delta or complete tool call)
        self.tok_s = Series()  # output tokens per second after the first event
        self.outcomes: deque[bool] = deque(maxlen=WINDOW)  # True = attempt succeeded
        self.requests = 0
        self.errors = 0

    def first_output(self, ms: float) -> None:
        self.ttft_ms.add(ms)

    def finished(self, tokens: int, seconds: float) -> None:
        self.requests += 1
        self.outcomes.append(True)
        if tokens > 0 and seconds > 0.001:
            self.tok_s.add(tokens / seconds)

    def failed(self) -> None:
        self.requests += 1
        self.errors += 1
        self.outcomes.append(False)

    @property
    def error_rate(self) -> float:
        return self.outcomes.count(False) / len(self.outcomes) if self.outcomes else 0.0

    def snapshot(self) -> dict:
        def r(x):
            return None if x is None else round(x, 1)
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 3),
                "ttft_ms": {"ewma": r(self.ttft_ms.ewma), "p50": r(self.ttft_ms.p(50)), "p99": r(self.ttft_ms.p(99))},
                "tok_s": {"ewma": r(self.tok_s.ewma), "p50": r(self.tok_s.p(50)), "p99": r(self.tok_s.p(99))}}
