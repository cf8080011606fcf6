"""One model turn across tiers: first-token hedging, transparent failover before anything irrevocable was
sent, and a clear error after. Attempts pump their provider's events into one queue; the first attempt to
produce output wins and the others are cancelled. No fixed sleeps: a failed attempt is replaced at once.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from bridge.config import LOCAL_MODEL_DEFAULT, Tier
from bridge.providers.base import ProviderError, StreamEvent
from bridge.reasons import MAX_FAILURE_CHARS, Failure, Reason
from bridge.routing.router import MAX_TRIES_PER_TIER, AttemptReport, Router, Verdict

log = logging.getLogger("wisp.bridge.routing.hedge")

RESET = "reset"  # event kind: the winning attempt failed and another takes over; drop the text seen so far
# HTTP statuses that mean "this request or this tier's configuration is wrong" (bad request, key, model):
# not retried on the same tier, and the provider's message reaches the user. 408, 409, 429 are transient.
REFUSED_STATUSES = (400, 401, 403, 404, 405, 413, 415, 422)


def out_of_quota(e) -> bool:
    """An account without credit: no Retry-After or second try cures it, so it is a refusal (fail over at once),
    not a rate limit. OpenAI answers it with 429 (which also means "slow down") and code insufficient_quota,
    Cerebras with 402 Payment Required."""
    return isinstance(e, ProviderError) and e.kind == "http" and (
        e.status == 402 or e.status == 429 and e.code == "insufficient_quota")


def refused(e: ProviderError) -> bool:
    return e.kind == "http" and e.status in REFUSED_STATUSES or out_of_quota(e)


def limited(e) -> bool:
    return isinstance(e, ProviderError) and e.kind == "http" and e.status == 429 and not out_of_quota(e)


def failure_text(router: Router, tier: Tier, e: ProviderError) -> str:
    """What one tier's failed attempt says to the person who asked."""
    if limited(e):
        return f"tier '{tier.name}' is rate limited ({e.message}); ask again in {math.ceil(router.limited_for(tier))} s"
    if refused(e):
        text = f"tier '{tier.name}' refused the request ({e.message}): {refusal_advice(e)}"
        if e.status == 404:  # which name and URL: the one a tier from the environment got by default, too
            unset = " (WISP_LOCAL_MODEL sets it)" if tier.model == LOCAL_MODEL_DEFAULT else ""
            text += f" (model '{tier.model}'{unset} at {tier.base_url})"
            if tier.provider != "anthropic" and "/v1" not in urlparse(tier.base_url).path:
                # Ollama's docs give http://localhost:11434, llama-server prints its bare address
                text += f"; OpenAI-compatible servers answer under /v1: try base_url {tier.base_url.rstrip('/')}/v1"
        return text
    return f"tier '{tier.name}' failed: {e.message}"


THEN = "; then "  # between the tiers a failure message names


def tried_text(texts: list[str]) -> str:
    """Each tier's failure in the order the tiers first failed, within MAX_FAILURE_CHARS: over it, each one is
    cut in its middle to an equal share, so that every tier's name, status and advice (what to fix) still show."""
    text = THEN.join(texts)
    if len(text) <= MAX_FAILURE_CHARS:
        return text
    share = max(2, (MAX_FAILURE_CHARS - len(THEN) * (len(texts) - 1)) // len(texts))
    return THEN.join(_cut(t, share) for t in texts)


def _cut(text: str, n: int) -> str:
    """text in at most n characters: its first two thirds and its end, with "…" where the middle was."""
    if len(text) <= n:
        return text
    head = n * 2 // 3
    return text[:head] + "…" + text[len(text) - (n - head - 1):]


def refusal_advice(e: ProviderError) -> str:
    """What the status points at: a 401 the key, a 404 the model or URL, a 400 or 422 this very request (a
    schema or message the provider rejects, which its quoted message and `param` name)."""
    if out_of_quota(e):
        return "its account is out of quota: add credit with the provider or use another API key"
    if e.status in (401, 403):
        return "check its API key"
    if e.status in (404, 405):
        return "check its model name and URL"
    if e.status == 413:
        return "the request is too large for it"
    if "does not support tools" in e.message:  # Ollama, for a model whose template has no tool calls
        return "the model cannot call tools: use one that can (Ollama's library marks them 'tools')"
    if "--enable-auto-tool-choice" in e.message:  # vLLM started without tool calling
        return "start vLLM with --enable-auto-tool-choice and the --tool-call-parser of its model"
    if over_context(e):
        return ("the prompt (the device's tools and the conversation) is longer than the model's context: start "
                "the server with a larger one (llama-server -c, Ollama num_ctx, vLLM --max-model-len)")
    return "the provider refused this request as sent (its message says why)"


# how servers word a prompt over the context: llama-server "exceeds the available context size", OpenAI and vLLM
# "maximum context length is", OpenAI's code context_length_exceeded
_OVER_CONTEXT = ("context size", "context length", "context_length_exceeded")


def over_context(e: ProviderError) -> bool:
    text = f"{e.message} {e.code or ''}".lower()
    return any(words in text for words in _OVER_CONTEXT)


@dataclass(eq=False)
class _Attempt:
    tier: Tier
    started: float
    caller: str = "device"
    task: asyncio.Task | None = None
    first_at: float | None = None
    out_chars: int = 0
    ended: bool = False  # its verdict is reported

    def end(self, router: Router, verdict: Verdict, tokens: int = 0, stream_s: float = 0.0) -> None:
        self.ended = True
        first_ms = None if self.first_at is None else (self.first_at - self.started) * 1000
        router.attempt_ended(AttemptReport(self.tier.name, verdict, first_ms, tokens, stream_s, self.caller))


class _Inbox:
    """What the attempts report, read by the one turn: a deque, the turn's waiting future, and one timer at the
    turn's next wake-up kept across waits. (An asyncio.Queue read under asyncio.timeout_at cost a Timeout
    object, a timer and several running-loop lookups per event: a visible share of the bridge's CPU.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._rang: float | None = None  # the wake-up time whose timer has rung

    def put_nowait(self, item) -> None:
        self._items.append(item)
        self._wake()

    def _ring(self) -> None:
        self._timer, self._rang = None, self._timer_at
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def get(self, wake_at: float):
        """The next report, or None once loop time reaches wake_at with none (one already there is taken)."""
        loop = self._loop
        while not self._items:
            # a timer may ring a hair before loop.time() reaches its time: having rung is enough
            if loop.time() >= wake_at or self._rang == wake_at:
                return None
            if self._timer is None or self._timer_at != wake_at:
                self.close()
                self._timer, self._timer_at = loop.call_at(wake_at, self._ring), wake_at
            self._waiter = fut = loop.create_future()
            try:
                await fut
            finally:
                self._waiter = None
        return self._items.popleft()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _pump(router: Router, a: _Attempt, chat: list[dict], tools: list[dict] | None,
                q: _Inbox, options: dict | None = None) -> None:
    loop = asyncio.get_running_loop()
    try:
        async for ev in router.make_provider(a.tier).stream_chat(chat, tools, options):
            if a.first_at is None:
                a.first_at = loop.time()
                router.first_output(a.tier, (a.first_at - a.started) * 1000)
            a.out_chars += len(ev.text) + (len(ev.call.raw_args) if ev.call else 0)
            if ev.kind == "done":
                usage = ev.usage or {}
                tokens = usage.get("completion_tokens") or a.out_chars // 4  # ~4 chars/token when usage is lost
                a.end(router, Verdict.OK, tokens if isinstance(tokens, int) else 0, loop.time() - a.first_at)
            q.put_nowait((a, ev))
    except ProviderError as e:
        if limited(e):
            router.rate_limited(a.tier, e.retry_after_s)
        a.end(router, Verdict.REFUSED if refused(e) else Verdict.LIMITED if limited(e) else Verdict.FAILED)
        q.put_nowait((a, e))
    except Exception as e:  # a provider bug must not hang the turn: it counts as this tier failing
        log.exception("tier %s: unexpected provider error", a.tier.name)
        a.end(router, Verdict.FAILED)
        q.put_nowait((a, ProviderError("malformed", f"internal error reading the stream: {type(e).__name__}")))
    finally:
        if not a.ended:
            a.end(router, Verdict.ABANDONED)
        router.release(a.tier)


async def stream_turn(router: Router, tiers: list[Tier], chat: list[dict], tools: list[dict] | None,
                      deadline: float, committed: Callable[[], bool],
                      req_class: str = "interactive",
                      options: dict | None = None, caller: str = "device",
                      budget: str = "the budget") -> AsyncIterator[tuple[Tier, StreamEvent]]:
    """(tier, event) pairs of the winning attempt, ending with its 'done'. Raises Failure.

    deadline is loop time. committed() says whether the consumer has sent something it cannot take back (a
    tool call to a device, a chunk to an HTTP client): after that a failing tier ends the turn with an error.
    A RESET event tells the consumer that the text it has buffered came from an attempt that then failed.
    caller ("device" or "api") picks the breakers the attempts count against (router.py). budget names the
    deadline in the error when it passes ("budget_ms=300"). When no tier answers, the error names each tier
    tried and what it last answered (tried_text).
    """
    loop = asyncio.get_running_loop()
    q = _Inbox(loop)
    running: dict[str, _Attempt] = {}
    failed: dict[str, str] = {}  # tier name -> its last failure, in the order tiers first failed
    tries: Counter = Counter()
    launched = 0
    winner: _Attempt | None = None
    hedge_at: float | None = None
    max_attempts = router.config.routing.max_attempts

    def launch(hedge: bool = False) -> bool:
        nonlocal launched, hedge_at
        remaining_s = deadline - loop.time()
        if launched >= max_attempts or remaining_s <= 0:
            return False
        tier = router.choose(tiers, tries, remaining_s * 1000, {a.tier.name for a in running.values()}, hedge,
                             caller)
        if tier is None:
            return False
        tries[tier.name] += 1
        launched += 1
        a = _Attempt(tier, loop.time(), caller)
        a.task = loop.create_task(_pump(router, a, chat, tools, q, options))
        running[f"{tier.name}#{tries[tier.name]}"] = a
        hedge_at = loop.time() + router.hedge_after_s(tier, remaining_s, tiers) if router.config.routing.hedge else None
        if hedge:
            log.info("hedge: no first output yet, also trying tier %s", tier.name)
        return True

    def drop(a: _Attempt) -> None:
        for key, other in list(running.items()):
            if other is a:
                del running[key]

    try:
        # a tier at max_concurrency is a queue, not a refusal: wait (FIFO, bounded) until an attempt
        # ends or this turn's own deadline passes
        while not launch():
            if await _waited_for_retry_after(router, tiers, deadline, caller):
                continue
            if not router.only_full(tiers, caller) or not await router.wait_for_capacity(deadline - loop.time()):
                raise router.unavailable(tiers, req_class, caller)
        while True:
            wake = deadline if winner is not None or hedge_at is None else min(deadline, hedge_at)
            report = await q.get(wake)
            if report is None:
                if wake == deadline or loop.time() >= deadline:
                    tier = (winner or list(running.values())[-1]).tier.name if running else None
                    for t in running.values():
                        failed[t.tier.name] = f"tier '{t.tier.name}' did not finish within {budget}"
                    raise Failure(Reason.TIMEOUT, tried_text(list(failed.values())
                                                             or [f"no tier finished within {budget}"]), tier)
                hedge_at = None
                launch(hedge=True)  # nothing left to hedge with: keep waiting on what runs
                continue
            a, item = report
            if a not in running.values():
                continue  # a cancelled loser's last words
            if isinstance(item, StreamEvent):
                if winner is None:
                    winner, hedge_at = a, None
                    for other in [o for o in running.values() if o is not a]:
                        other.task.cancel()
                        drop(other)
                yield a.tier, item
                if item.kind == "done":
                    return
                continue
            # the attempt failed
            drop(a)
            failed[a.tier.name] = failure_text(router, a.tier, item)
            if refused(item):
                tries[a.tier.name] = MAX_TRIES_PER_TIER  # the same request would be refused the same way
            if a is winner:
                winner = None
                if committed():
                    raise Failure(Reason.TIER_FAILED, f"tier '{a.tier.name}' failed after a tool call was sent: "
                                  f"{item.message}; not retried so that no action runs twice", a.tier.name)
                yield a.tier, StreamEvent(RESET)
            # Replace the failed attempt at once, even while a hedge runs: that hedge may be a slow tier.
            replaced = launch()
            log.info("tier %s failed (%s); %s", a.tier.name, item.message,
                     "failing over" if replaced else "waiting for the other attempt" if running else "giving up")
            if not running and limited(item) and tries[a.tier.name] < MAX_TRIES_PER_TIER \
                    and await _waited_for_retry_after(router, tiers, deadline, caller) and launch():
                continue  # Retry-After honoured within the budget: the tier is asked again
            if not running:  # the code is the last failure's; the words are every tier's
                message = tried_text(list(failed.values()))
                if limited(item):
                    raise Failure(Reason.RATE_LIMITED, message, a.tier.name, retry_after_s=router.limited_for(a.tier))
                if refused(item):
                    raise Failure(Reason.TIER_REFUSED, message, a.tier.name, status=item.status)
                raise Failure(Reason.TIER_FAILED, message, a.tier.name)
    finally:
        q.close()
        pending = [a.task for a in running.values() if not a.task.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def _waited_for_retry_after(router: Router, tiers: list[Tier], deadline: float, caller: str) -> bool:
    """Every tier of the route is rate limited: wait out the shortest Retry-After if the budget allows it.
    Not for /v1 callers: they get the 429 with its Retry-After at once, and their clients back off as usual."""
    wait = router.limited_wait(tiers)
    if caller == "api":
        return False
    loop = asyncio.get_running_loop()
    if wait is None or loop.time() + wait >= deadline:
        return False
    await asyncio.sleep(wait)  # the provider said when; asking sooner would only be refused again
    return True
