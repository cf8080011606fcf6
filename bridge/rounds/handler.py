"""Answer one device `llm/req`: dedupe, budget check, manifest, then the round (round.py), and report the
round's Outcome to everything that accounts for it.

Contract (docs/protocol.md): every request that can be attributed (topic device id + payload `id`) gets
exactly one `llm/res` with `done: true`, whatever happens; everything else is logged and dropped.
One log line per request.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.config import BridgeConfig
from bridge.cost import CostStore
from bridge.manifests import ManifestCache
from bridge.reasons import Failure, Reason
from bridge.rounds.answer import Answer, show_id
from bridge.rounds.dedupe import Dedupe, Seen
from bridge.rounds.outcome import Outcome
from bridge.rounds.request import budget_ms, check, read
from bridge.rounds.round import Spend, run_round
from bridge.routing.router import Router
from bridge.signing import request_bind, verify

log = logging.getLogger("wisp.bridge.rounds.handler")


@dataclass
class HandlerContext:
    config: BridgeConfig
    manifests: ManifestCache
    publish: Callable[[str, dict | bytes], None]  # MqttLink.publish, or a recorder in tests
    router: Router
    costs: CostStore | None
    dedupe: Dedupe
    on_outcome: list[Callable[[Outcome], None]] = field(default_factory=list)  # metrics, dashboard events

    refused: int = 0  # llm/req refused as unsigned, forged or from an unknown device

    def answer(self, device_id: str, req_id: str, round_: int | None, received: float | None,
               bind: str | None = None) -> Answer:
        return Answer(self.publish, device_id, req_id, round_, self.config.signing_keys.get(device_id), received,
                      bind)

    def authentic(self, device_id: str, payload: bytes) -> tuple[bytes, str | None] | None:
        """(the request text, its bind) if this bridge may answer it, else None (logged, not answered).
        With signing keys the fleet is known: only its devices are served, and only requests signed
        with the device's own key, so a broker login alone obtains no signed answers (docs/security.md)."""
        keys = self.config.signing_keys
        if not keys:
            return payload, None
        key = keys.get(device_id)
        text = verify(key, payload) if key else None
        if text is None:
            self.refused += 1
            if self.refused & (self.refused - 1) == 0:  # 1, 2, 4, 8...: a flood cannot flood the log
                log.warning("device=%s llm/req refused: %s (%d refused so far)", device_id,
                            "unsigned or forged" if key else "not a device of this fleet", self.refused)
            return None
        return text, request_bind(text)


def _open(device_id: str, payload: bytes, ctx: HandlerContext, refused: str | None = None):
    """(envelope, bind) of an authentic request that has an id to answer, else None (logged). refused: why
    the request will not be worked on, for the log when it cannot even be answered."""
    opened = ctx.authentic(device_id, payload)
    if opened is None:
        return None
    payload, bind = opened
    env = read(payload)
    if env.req_id is None:
        log.warning("device=%s llm/req dropped (%sno usable id to answer): %s", device_id,
                    f"{refused}; " if refused else "", env.problem)
        return None
    return env, bind


async def handle_llm_request(device_id: str, payload: bytes, ctx: HandlerContext,
                             received: float | None = None) -> None:
    """received: monotonic time the message arrived (now if not given); the outcome's timings count from it."""
    opened = _open(device_id, payload, ctx)
    if opened is None:
        return
    env, bind = opened
    key = (device_id, env.req_id, env.round)
    answer = ctx.answer(device_id, env.req_id, env.round, received, bind)
    seen = await ctx.dedupe.claim(key, budget_ms(env.body) / 1000)  # across bridges with a shared store
    if seen is Seen.RUNNING:
        log.info("llm/req device=%s id=%s round=%s duplicate of a running request: ignored",
                 device_id, show_id(env.req_id), env.round)
        return
    if isinstance(seen, Outcome):
        _report(ctx, answer.replay(seen))
        log.info("llm/req device=%s id=%s round=%s duplicate: answer replayed (%d messages)",
                 device_id, show_id(env.req_id), env.round, len(seen.sent))
        return
    spend = Spend()
    try:
        if env.problem:
            raise Failure(Reason.BAD_REQUEST, env.problem)
        req = check(env.body, env.round)
        refusal = await ctx.costs.check_budget(device_id) if ctx.costs else None
        if refusal:
            raise Failure(Reason.OVER_BUDGET, refusal)
        manifest = ctx.manifests.get(device_id)
        if manifest is None:
            raise Failure(Reason.NO_MANIFEST, f"bridge has no manifest for device {device_id} yet")
        if req.hash and req.hash != manifest["hash"]:
            # Still useful: tools rarely change between publishes, and the device validates every call anyway.
            log.warning("device=%s id=%s: request hash %s, cached manifest %s; using the cached one",
                        device_id, show_id(env.req_id), req.hash, manifest["hash"])
        await run_round(ctx, req, manifest, answer, spend, ctx.manifests.catalog(device_id))
    except Failure as e:
        answer.fail(e)
    except asyncio.CancelledError:
        if not answer.done:
            answer.fail(Failure(Reason.SHUTTING_DOWN, "the bridge is shutting down; ask again"))
        raise
    except Exception:  # the contract is one done per request, even for our own bugs
        log.exception("device=%s id=%s: unexpected error", device_id, show_id(env.req_id))
        if not answer.done:
            answer.fail(Failure(Reason.INTERNAL, "internal error in the bridge (details in its log)"))
    finally:
        outcome = answer.outcome(env.class_label, spend.by_tier.values())
        # A re-send of an answer that failed before any action gets a fresh try; anything else is replayed.
        ctx.dedupe.finish(key, outcome if outcome.calls or outcome.ok else None)
        if ctx.costs:
            ctx.costs.charge(outcome)
        _report(ctx, outcome)
        log.log(logging.INFO if outcome.ok else logging.WARNING,
                "llm/req device=%s id=%s round=%s tier=%s calls=%d tokens=%d cost_usd=%.6f total_ms=%.0f %s",
                device_id, show_id(env.req_id), env.round, outcome.tier or "-", outcome.calls, outcome.tokens,
                outcome.cost_usd, outcome.total_s * 1000, "ok" if outcome.ok else f"err={outcome.error!r}")


def refuse_llm_request(device_id: str, payload: bytes, ctx: HandlerContext, failure: Failure,
                       received: float | None = None) -> None:
    """Answer a request we will not work on (busy, shutting down) with its one `done`, without a task."""
    opened = _open(device_id, payload, ctx, failure.message)
    if opened is None:
        return
    env, bind = opened
    answer = ctx.answer(device_id, env.req_id, env.round, received, bind)
    answer.fail(failure)
    _report(ctx, answer.outcome(env.class_label))
    log.warning("llm/req device=%s id=%s round=%s refused: %s", device_id, show_id(env.req_id), env.round,
                failure.message)


def _report(ctx: HandlerContext, outcome: Outcome) -> None:
    for listener in ctx.on_outcome:
        try:
            listener(outcome)
        except Exception:  # accounting must never cost a device its answer
            log.exception("outcome listener failed")
