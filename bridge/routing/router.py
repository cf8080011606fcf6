"""Choose the inference tier for each attempt of a request: the configured tiers of its class's route, ordered by
live state (statistics, breakers, concurrency) and the time left. Attempts report back here when they end; the
on_attempt hook passes each report on (the bridge's metrics).
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bridge.config import LOCAL_TIER, BridgeConfig, Tier
from bridge.reasons import Failure, Reason
from bridge.routing.breaker import Breaker
from bridge.routing.stats import TierStats

NO_TIER_MESSAGE = (
    "no inference tier configured: give the bridge OPENAI_API_KEY (OpenAI), CEREBRAS_API_KEY (Cerebras) "
    "or WISP_LOCAL_URL (an OpenAI-compatible server such as llama-server or Ollama, "
    "e.g. http://127.0.0.1:8080/v1), or add [tiers.<name>] with base_url and model to wisp.toml, "
    "then restart the bridge"
)


def no_tier_reason(config: BridgeConfig, req_class: str) -> str:
    """Why a class's route has no configured tier, phrased for the person who has to fix it."""
    if not config.tiers:
        return NO_TIER_MESSAGE
    if req_class == "private":
        return ("no local tier for a private request (private requests never leave the local tier): "
                "set WISP_LOCAL_URL to an OpenAI-compatible server such as llama-server or Ollama")
    route = ", ".join(config.routes.get(req_class, [])) or "empty"
    return (f"no configured tier on the '{req_class}' route ({route}); configured tiers: "
            f"{', '.join(sorted(config.tiers))}; edit [routes] in wisp.toml")


class Verdict(Enum):
    OK = "ok"
    FAILED = "error"
    REFUSED = "refused"  # the tier said the request or its configuration is wrong (HTTP 4xx): retrying cannot help
    LIMITED = "limited"  # HTTP 429: the tier is healthy but asks us to wait (Retry-After)
    ABANDONED = "abandoned"  # cancelled (hedge lost, budget over): says nothing about the tier


@dataclass(frozen=True)
class AttemptReport:
    """One attempt on one tier, as it ended."""
    tier: str
    verdict: Verdict
    first_output_ms: float | None  # request sent -> first text delta or complete tool call; None if none came
    tokens: int = 0  # output tokens of a finished attempt
    stream_s: float = 0.0  # first output -> done of a finished attempt
    caller: str = "device"  # "device" rounds or "api" (/v1): each has its own breakers


HEDGE_FLOOR_MS = 30.0  # never hedge sooner: below this, the network's own jitter would trigger it
HEDGE_P_MARGIN = 1.5  # hedge when no first output by this multiple of the tier's p95 time to first output
HEDGE_BUDGET_SHARE = 0.5  # without stats: hedge after this share of the remaining budget
MAX_QUEUED = 256  # turns that may wait for a full tier at once; beyond it a turn is refused at once
MAX_TRIES_PER_TIER = 2  # attempts of one tier within one model turn (a retry after a quick error)
DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without Retry-After: wait this long before the tier's next attempt
# A tier ahead in the route without statistics is tried before a known-fast later one at most this often: a
# request that finds it still down fails over (or hedges, half its budget in) once a minute, not each time
EXPLORE_S = 60.0


class Router:
    """The live routing state of one bridge process: per-tier stats, breakers and in-flight counts."""

    def __init__(self, config: BridgeConfig, make_provider, clock=None,
                 on_attempt: Callable[[AttemptReport], None] | None = None):
        self.config = config
        self.make_provider = make_provider
        self.on_attempt = on_attempt
        self.stats = {name: TierStats() for name in config.tiers}
        self.breakers = {name: Breaker(**({"clock": clock} if clock else {})) for name in config.tiers}
        # /v1 callers get breakers of their own: bad or unlucky API traffic must not cut the devices off a
        # tier (and devices' failures do not refuse API callers either). Statistics are shared: they are facts.
        self.api_breakers = {name: Breaker(**({"clock": clock} if clock else {})) for name in config.tiers}
        self._clock = clock or time.monotonic
        self.limited_until = {name: 0.0 for name in config.tiers}  # a 429's Retry-After, on self._clock
        self.in_flight = {name: 0 for name in config.tiers}
        self.explored = {name: float("-inf") for name in config.tiers}  # last out-of-order try (EXPLORE_S)
        self._waiting: deque[asyncio.Future] = deque()  # turns waiting for a full tier, oldest first

    def route(self, req_class: str) -> list[Tier]:
        """Configured tiers of the class's route, in order. Private requests never leave `local`."""
        names = [LOCAL_TIER] if req_class == "private" else self.config.routes.get(req_class, [])
        return [self.config.tiers[n] for n in names if n in self.config.tiers]

    def predicted_ms(self, tier: Tier) -> float | None:
        """p90 time to first output, or None while the tier has too few samples to say."""
        return self.stats[tier.name].ttft_ms.p(90)

    def choose(self, tiers: list[Tier], tries: dict[str, int], remaining_ms: float,
               running: set[str] = frozenset(), hedge: bool = False, caller: str = "device") -> Tier | None:
        """The next tier to attempt, already admitted (breaker and concurrency); release() it afterwards.

        Evidence beats hope: first an untried tier whose statistics say it answers in time; then a tier tried
        before that does (a retry after a quick error), or for a hedge the running tier again (a stall on a
        healthy single deployment); then untried tiers without statistics, in route order; last, tiers expected
        to be late (late beats nothing while the budget lasts).
        """
        verdicts: dict[str, bool | None] = {}

        def known(t: Tier) -> bool | None:  # asked several times per tier below: the percentile is read once
            if t.name not in verdicts:
                p = self.predicted_ms(t)
                verdicts[t.name] = None if p is None else p <= remaining_ms
            return verdicts[t.name]

        left = [t for t in tiers if tries.get(t.name, 0) < MAX_TRIES_PER_TIER]
        fresh = [t for t in left if not tries.get(t.name) and t.name not in running]
        again = [t for t in left if tries.get(t.name) and t.name not in running and known(t) is not False]
        if hedge:
            again += [t for t in left if t.name in running and known(t)]
        again.sort(key=lambda t: known(t) is None)  # known-fast before unknown
        passes = ([t for t in fresh if known(t)], [t for t in again if known(t)],
                  [t for t in fresh if known(t) is None], [t for t in again if known(t) is None],
                  [t for t in fresh if known(t) is False])
        for t in self._explore(tiers, fresh, passes[0], known, hedge):
            if self.admit(t, caller):
                self.explored[t.name] = self._clock()
                return t
        for candidates in passes:
            for t in candidates:
                if self.admit(t, caller):
                    return t
        return None

    def _explore(self, tiers: list[Tier], fresh: list[Tier], fast: list[Tier], known, hedge: bool) -> list[Tier]:
        """Tiers ahead of the first known-fast one in the route that have no statistics yet, not tried out of
        order for EXPLORE_S. Evidence beats hope, but a tier without evidence would otherwise never get any:
        one that failed before its MIN_SAMPLES first outputs (down when the bridge started) would not be asked
        again, nor its breaker probed, while a later tier answers in time, though the route puts it first."""
        if hedge or not fast:
            return []
        first_fast = tiers.index(fast[0])
        now = self._clock()
        return [t for t in fresh if tiers.index(t) < first_fast and known(t) is None
                and now - self.explored[t.name] >= EXPLORE_S]

    def breakers_of(self, caller: str) -> dict[str, Breaker]:
        return self.api_breakers if caller == "api" else self.breakers

    def admit(self, tier: Tier, caller: str = "device") -> bool:
        if self.in_flight[tier.name] >= tier.max_concurrency or self.limited_for(tier) > 0 \
                or not self.breakers_of(caller)[tier.name].allow():
            return False
        self.in_flight[tier.name] += 1
        return True

    def release(self, tier: Tier) -> None:
        self.in_flight[tier.name] -= 1
        while self._waiting:  # the oldest waiting turn tries first (FIFO)
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def only_full(self, tiers: list[Tier], caller: str = "device") -> bool:
        """True when some tier of the route is healthy and merely at max_concurrency: worth waiting for."""
        return any(self.breakers_of(caller)[t.name].state != "open" and self.in_flight[t.name] >= t.max_concurrency
                   for t in tiers)

    def rate_limited(self, tier: Tier, retry_after_s: float | None) -> None:
        """A 429: no attempt on the tier until its Retry-After has passed."""
        wait = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
        self.limited_until[tier.name] = max(self.limited_until[tier.name], self._clock() + wait)

    def limited_for(self, tier: Tier) -> float:
        """Seconds until the tier's Retry-After has passed (0 when it is not rate limited)."""
        return max(0.0, self.limited_until[tier.name] - self._clock())

    def limited_wait(self, tiers: list[Tier]) -> float | None:
        """When every tier of the route is rate limited: seconds until the first may be asked again."""
        waits = [self.limited_for(t) for t in tiers]
        return min(waits) if tiers and all(w > 0 for w in waits) else None

    async def wait_for_capacity(self, timeout_s: float) -> bool:
        """Queue until an attempt ends somewhere (True), or timeout_s passes or the queue is full (False)."""
        if len(self._waiting) >= MAX_QUEUED or timeout_s <= 0:
            return False
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            if fut in self._waiting:
                self._waiting.remove(fut)

    def first_output(self, tier: Tier, ms: float) -> None:
        """An attempt's first output, counted at once: later choices of concurrent requests use it."""
        self.stats[tier.name].first_output(ms)

    def attempt_ended(self, report: AttemptReport) -> None:
        """The verdict of one attempt: tier statistics and breaker, then the on_attempt hook."""
        stats, breaker = self.stats[report.tier], self.breakers_of(report.caller)[report.tier]
        if report.verdict is Verdict.OK:
            stats.finished(report.tokens, report.stream_s)
            breaker.success()
        elif report.verdict is Verdict.FAILED:
            stats.failed()
            breaker.failure()
        elif report.verdict is Verdict.REFUSED:
            # not a sign the tier is down: opening its breaker would turn the provider's own message
            # ("model not found", "invalid key") into "ask again shortly" for every later request, and
            # let bad /v1 requests cut the devices off a healthy tier
            stats.failed()
            breaker.abandoned()
        else:
            breaker.abandoned()
        if self.on_attempt:
            self.on_attempt(report)

    def hedge_after_s(self, tier: Tier, remaining_s: float, tiers: list[Tier] = ()) -> float:
        """How long to wait for the first output of an attempt on `tier` before hedging.

        From the tier's own p95 (or a share of the budget while it has no statistics), but never later than
        the last moment at which the fastest known tier could still answer within the remaining budget.
        """
        if tier.hedge_after_s is not None:
            return tier.hedge_after_s
        p95 = self.stats[tier.name].ttft_ms.p(95)
        wait_ms = remaining_s * 1000 * HEDGE_BUDGET_SHARE if p95 is None else p95 * HEDGE_P_MARGIN
        # p99, not the p90 that choose() uses: a hedge started then still counts as "answers in time" there
        known = [p for p in (self.stats[t.name].ttft_ms.p(99) for t in tiers) if p is not None]
        if known:
            wait_ms = min(wait_ms, remaining_s * 1000 - min(known))
        return max(HEDGE_FLOOR_MS, wait_ms) / 1000

    def unavailable(self, tiers: list[Tier], req_class: str, caller: str = "device") -> Failure:
        """Why no attempt could start on the route."""
        if not tiers:
            return Failure(Reason.NO_TIER, no_tier_reason(self.config, req_class))
        wait = self.limited_wait(tiers)
        if wait is not None:
            return Failure(Reason.RATE_LIMITED, f"every tier is rate limited by its provider; ask again in "
                           f"{math.ceil(wait)} s", tiers[0].name, retry_after_s=wait)
        parts = []
        for t in tiers:
            b = self.breakers_of(caller)[t.name]
            if self.limited_for(t) > 0:
                parts.append(f"'{t.name}' is rate limited for {math.ceil(self.limited_for(t))} s")
            elif b.state == "open":
                parts.append(f"'{t.name}' is failing (circuit open, next try in {b.retry_in_s():.0f} s)")
            elif self.in_flight[t.name] >= t.max_concurrency:
                parts.append(f"'{t.name}' is at its limit of {t.max_concurrency} concurrent requests")
            else:
                parts.append(f"'{t.name}' is probing after failures")
        return Failure(Reason.UNAVAILABLE, "no tier available: " + "; ".join(parts) + "; ask again shortly")

    def snapshot(self) -> dict:
        return {name: {**self.stats[name].snapshot(), "breaker": self.breakers[name].state,
                       "api_breaker": self.api_breakers[name].state, "in_flight": self.in_flight[name],
                       "rate_limited_s": round(self.limited_for(self.config.tiers[name]), 1)}
                for name in self.config.tiers}
