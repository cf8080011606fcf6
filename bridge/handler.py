"""Answer one device `llm/req`: dedupe, budget check, manifest, then the round (bridge/round.py).

Contract (docs/protocol.md): every request that can be attributed (topic device id + payload `id`) gets
exactly one `llm/res` with `done: true`, whatever happens; everything else is logged and dropped.
One log line per request.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from bridge import protocol
from bridge.answer import Answer, show_id
from bridge.config import BridgeConfig
from bridge.cost import CostStore
from bridge.dedupe import Dedupe
from bridge.manifests import ManifestCache
from bridge.request import RequestError, check, read
from bridge.round import Spend, run_round
from bridge.router import Router

log = logging.getLogger("wisp.bridge.handler")


@dataclass
class HandlerContext:
    config: BridgeConfig
    manifests: ManifestCache
    publish: Callable[[str, dict], None]  # MqttLink.publish, or a recorder in tests
    router: Router
    costs: CostStore | None
    dedupe: Dedupe


async def handle_llm_request(device_id: str, payload: bytes, ctx: HandlerContext) -> None:
    started = time.monotonic()
    raw, req_id, round_, problem = read(payload)
    if req_id is None:
        log.warning("device=%s llm/req dropped (no usable id to answer): %s", device_id, problem)
        return
    key = (device_id, req_id, round_)
    seen = ctx.dedupe.begin(key)
    if seen == "running":
        log.info("llm/req device=%s id=%s round=%s duplicate of a running request: ignored",
                 device_id, show_id(req_id), round_)
        return
    if isinstance(seen, list):
        for msg in seen:
            ctx.publish(protocol.topic(device_id, protocol.LLM_RES), msg)
        log.info("llm/req device=%s id=%s round=%s duplicate: answer replayed (%d messages)",
                 device_id, show_id(req_id), round_, len(seen))
        return
    answer = Answer(ctx.publish, device_id, req_id, round_)
    spend = Spend()
    try:
        if problem:
            raise RequestError(problem)
        req = check(raw, round_)
        refusal = ctx.costs.over_budget(device_id) if ctx.costs else None
        if refusal:
            raise RequestError(refusal)
        manifest = ctx.manifests.get(device_id)
        if manifest is None:
            raise RequestError(f"bridge has no manifest for device {device_id} yet")
        if req.hash and req.hash != manifest["hash"]:
            # Still useful: tools rarely change between publishes, and the device validates every call anyway.
            log.warning("device=%s id=%s: request hash %s, cached manifest %s; using the cached one",
                        device_id, show_id(req_id), req.hash, manifest["hash"])
        await run_round(ctx, device_id, req, manifest, answer, spend)
    except RequestError as e:
        answer.fail(str(e))
    except asyncio.CancelledError:
        if not answer.done:
            answer.fail("the bridge is shutting down; ask again")
        raise
    except Exception:  # the contract is one done per request, even for our own bugs
        log.exception("device=%s id=%s: unexpected error", device_id, show_id(req_id))
        if not answer.done:
            answer.fail("internal error in the bridge (details in its log)")
    finally:
        # A re-send of an answer that failed before any action gets a fresh try; anything else is replayed.
        ctx.dedupe.finish(key, answer.sent if answer.calls or not answer.error else None)
        cost = 0.0
        if ctx.costs:
            for tier, n_in, n_out, estimated in spend.by_tier.values():
                cost += ctx.costs.record(device_id, tier, req_id, n_in, n_out, estimated)
        tokens = sum(r[1] + r[2] for r in spend.by_tier.values())
        log.log(logging.WARNING if answer.error else logging.INFO,
                "llm/req device=%s id=%s round=%s tier=%s calls=%d tokens=%d cost_usd=%.6f total_ms=%.0f %s",
                device_id, show_id(req_id), round_, answer.tier or "-", answer.calls, tokens, cost,
                (time.monotonic() - started) * 1000, f"err={answer.error!r}" if answer.error else "ok")


def refuse_llm_request(device_id: str, payload: bytes, ctx: HandlerContext, reason: str) -> None:
    """Answer a request we will not work on (busy, shutting down) with its one `done`, without a task."""
    _, req_id, round_, _ = read(payload)
    if req_id is None:
        log.warning("device=%s llm/req dropped (%s; no usable id to answer)", device_id, reason)
        return
    Answer(ctx.publish, device_id, req_id, round_).fail(reason)
    log.warning("llm/req device=%s id=%s round=%s refused: %s", device_id, show_id(req_id), round_, reason)
