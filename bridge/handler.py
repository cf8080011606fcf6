"""Answer one device `llm/req`: check it, pick a tier, stream each tool call back the moment it is complete.

Contract (docs/protocol.md): every request that can be attributed (topic device id + payload `id`) gets
exactly one `llm/res` with `done: true`, whatever happens; everything else is logged and dropped.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from bridge.config import REQUEST_CLASSES, BridgeConfig, Tier
from bridge.manifests import ManifestCache, openai_tools, system_prompt
from bridge.providers.openai_compat import OpenAICompatProvider, ProviderError
from bridge.router import no_tier_reason, pick_tier
from bridge.translate import to_openai_messages

log = logging.getLogger("wisp.bridge.handler")

MAX_REQUEST_BYTES = 64 * 1024
DEVICE_MAX_PAYLOAD = 4096  # firmware MAX_PAYLOAD: the device discards bigger llm/res messages unread
MAX_ID_CHARS = 40
# For an oversized request we do not parse the JSON; these find the id and round near its start, if there.
_PEEK_BYTES = 1024
_PEEK_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,40})"')
_PEEK_ROUND = re.compile(rb'"round"\s*:\s*(\d{1,6})\b')


@dataclass
class HandlerContext:
    config: BridgeConfig
    manifests: ManifestCache
    publish: Callable[[str, dict], None]  # MqttLink.publish, or a recorder in tests
    make_provider: Callable[[Tier], OpenAICompatProvider]


def provider_factory(session: aiohttp.ClientSession) -> Callable[[Tier], OpenAICompatProvider]:
    """Providers are cheap views over the one shared ClientSession (its connection pool is the costly part)."""
    def make(tier: Tier) -> OpenAICompatProvider:
        return OpenAICompatProvider(session, tier.base_url, tier.model, api_key=tier.api_key,
                                    connect_timeout_s=tier.connect_timeout_s,
                                    first_token_timeout_s=tier.first_token_timeout_s,
                                    idle_timeout_s=tier.idle_timeout_s)
    return make


class RequestError(Exception):
    """A reason to refuse the request, phrased for the person who asked."""


class Answer:
    """The llm/res stream of one round: numbers messages by seq and sends exactly one `done`."""

    def __init__(self, publish: Callable[[str, dict], None], device_id: str, req_id: str, round_: int | None):
        self._publish = publish
        self.topic = f"wisp/{device_id}/llm/res"
        self.req_id, self.round = req_id, round_
        self.seq = 0
        self.calls = 0
        self.done = False
        self.tier: str | None = None
        self.error: str | None = None

    def _send(self, body: dict, trim: str | None = None) -> None:
        msg = {"v": 1, "id": self.req_id, "round": self.round, "seq": self.seq, **body}
        if self.tier:
            msg["tier"] = self.tier
        self._publish(self.topic, _fit(msg, trim) if trim else msg)
        self.seq += 1

    def call(self, cid: str, tool: str, args: dict) -> None:
        msg = {"calls": [{"cid": cid, "tool": tool, "args": args}], "done": False}
        if _size({"v": 1, "id": self.req_id, "round": self.round, "seq": self.seq, "tier": self.tier, **msg}) \
                > DEVICE_MAX_PAYLOAD:
            # The device would drop the whole message; empty args make it answer "Error: ..." the LLM can read.
            log.warning("id=%s call %s args too large for the device; sent as {}", _show(self.req_id), tool)
            msg["calls"][0]["args"] = {}
        self._send(msg)
        self.calls += 1

    def finish(self, text: str, usage: dict | None) -> None:
        body = {"done": True, "text": text}
        if usage:
            body["usage"] = usage
        self._send(body, trim="text")
        self.done = True

    def fail(self, err: str) -> None:
        self.error = err
        self._send({"done": True, "err": err}, trim="err")
        self.done = True


async def handle_llm_request(device_id: str, payload: bytes, ctx: HandlerContext) -> None:
    started = time.monotonic()
    req, req_id, round_, problem = _read(payload)
    if req_id is None:
        log.warning("device=%s llm/req dropped (no usable id to answer): %s", device_id, problem)
        return
    answer = Answer(ctx.publish, device_id, req_id, round_)
    first_call_at: list[float] = []
    try:
        if problem:
            raise RequestError(problem)
        await _serve(device_id, req, answer, ctx, first_call_at)
    except RequestError as e:
        answer.fail(str(e))
    except ProviderError as e:
        answer.fail(f"tier '{answer.tier}' failed: {e.message}")
    except asyncio.CancelledError:
        if not answer.done:
            answer.fail("the bridge is shutting down; ask again")
        raise
    except Exception:  # the contract is one done per request, even for our own bugs
        log.exception("device=%s id=%s: unexpected error", device_id, _show(req_id))
        if not answer.done:
            answer.fail("internal error in the bridge (details in its log)")
    finally:
        total_ms = (time.monotonic() - started) * 1000
        first = f"{(first_call_at[0] - started) * 1000:.0f}" if first_call_at else "-"
        log.log(logging.WARNING if answer.error else logging.INFO,
                "llm/req device=%s id=%s round=%s tier=%s calls=%d first_call_ms=%s total_ms=%.0f %s",
                device_id, _show(req_id), round_, answer.tier or "-", answer.calls, first, total_ms,
                f"err={answer.error!r}" if answer.error else "ok")


def refuse_llm_request(device_id: str, payload: bytes, ctx: HandlerContext, reason: str) -> None:
    """Answer a request we will not work on (busy, shutting down) with its one `done`, without a task."""
    _, req_id, round_, _ = _read(payload)
    if req_id is None:
        log.warning("device=%s llm/req dropped (%s; no usable id to answer)", device_id, reason)
        return
    Answer(ctx.publish, device_id, req_id, round_).fail(reason)
    log.warning("llm/req device=%s id=%s round=%s refused: %s", device_id, _show(req_id), round_, reason)


async def _serve(device_id: str, req: dict, answer: Answer, ctx: HandlerContext, first_call_at: list) -> None:
    if req.get("v") != 1:
        raise RequestError(f"unsupported protocol version v={req.get('v')!r}; this bridge speaks v=1")
    if answer.round is None:
        raise RequestError("round must be an integer >= 0")
    req_class = req.get("class", "interactive")
    if req_class not in REQUEST_CLASSES:
        raise RequestError(f"class must be one of {', '.join(REQUEST_CLASSES)}, got {req_class!r}")
    budget_ms = req.get("budget_ms")
    if budget_ms is not None and (not _is_int(budget_ms) or budget_ms <= 0):
        raise RequestError(f"budget_ms must be a positive integer, got {budget_ms!r}")
    want_hash = req.get("hash")
    if want_hash is not None and not isinstance(want_hash, str):
        raise RequestError("hash must be a string")
    try:
        messages = to_openai_messages(req.get("msgs"))
    except ValueError as e:
        raise RequestError(f"bad request: {e}") from None

    manifest = ctx.manifests.get(device_id)
    if manifest is None:
        raise RequestError(f"bridge has no manifest for device {device_id} yet")
    if want_hash and want_hash != manifest["hash"]:
        # Still useful: tools rarely change between publishes, and the device validates every call anyway.
        log.warning("device=%s id=%s: request hash %s, cached manifest %s; using the cached one",
                    device_id, _show(answer.req_id), want_hash, manifest["hash"])
    tier = pick_tier(ctx.config, req_class)
    if tier is None:
        raise RequestError(no_tier_reason(ctx.config, req_class))
    answer.tier = tier.name

    chat = [{"role": "system", "content": system_prompt(manifest)}, *messages]
    text, usage = [], None
    try:
        # Past budget_ms the device has stopped listening: stop spending tokens on it.
        async with asyncio.timeout(budget_ms / 1000 if budget_ms else None):
            async for ev in ctx.make_provider(tier).stream_chat(chat, tools=openai_tools(manifest) or None):
                if ev.kind == "call":
                    if not first_call_at:
                        first_call_at.append(time.monotonic())
                    answer.call(*_call_fields(ev.call, answer))
                elif ev.kind == "text":
                    text.append(ev.text)
                elif ev.kind == "done":
                    usage = _usage(ev.usage)
    except TimeoutError:
        raise RequestError(f"tier '{tier.name}' did not finish within budget_ms={budget_ms}") from None
    answer.finish("".join(text).strip(), usage)


def _read(payload: bytes) -> tuple[dict | None, str | None, int | None, str | None]:
    """(request, id, round, problem). id is None when nobody could be answered."""
    if len(payload) > MAX_REQUEST_BYTES:
        head = payload[:_PEEK_BYTES]
        m_id, m_round = _PEEK_ID.search(head), _PEEK_ROUND.search(head)
        req_id = m_id.group(1).decode("utf-8", "replace") if m_id else None
        return (None, req_id, int(m_round.group(1)) if m_round else None,
                f"request too large: {len(payload)} bytes (limit {MAX_REQUEST_BYTES})")
    try:
        req = json.loads(payload)
    except ValueError as e:  # UnicodeDecodeError is a ValueError too
        return None, None, None, f"not JSON ({e})"
    if not isinstance(req, dict):
        return None, None, None, f"not a JSON object (a {type(req).__name__})"
    req_id = req.get("id")
    if not isinstance(req_id, str) or not 1 <= len(req_id) <= MAX_ID_CHARS:
        return None, None, None, f"id must be a string of 1-{MAX_ID_CHARS} characters, got {req_id!r:.60}"
    round_ = req.get("round")
    return req, req_id, round_ if _is_int(round_) and round_ >= 0 else None, None


def _call_fields(call, answer: Answer) -> tuple[str, str, dict]:
    if call.error or not isinstance(call.args, dict):
        # Forward anyway: the device checks args against its manifest and returns an "Error: ..." result the
        # LLM can read and correct next round. Dropping the call would leave the LLM believing it acted.
        log.warning("id=%s tier=%s: call %r has bad arguments (%s): %r; forwarded with {}",
                    _show(answer.req_id), answer.tier, call.name, call.error, call.raw_args[:200])
    args = call.args if isinstance(call.args, dict) and not call.error else {}
    return call.cid or f"call_{answer.round}_{answer.seq}", call.name, args


def _usage(usage: dict | None) -> dict | None:
    if not isinstance(usage, dict):
        return None
    n_in, n_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return {"in": n_in, "out": n_out} if _is_int(n_in) and _is_int(n_out) else None


def _fit(msg: dict, field: str) -> dict:
    """Trim msg[field] so the encoded message fits the device's MAX_PAYLOAD."""
    over = _size(msg) - DEVICE_MAX_PAYLOAD
    if over <= 0:
        return msg
    raw = msg[field].encode()
    # JSON escapes can make a byte cost more than one; a few passes always converge (each cuts >= `over`).
    for _ in range(8):
        raw = raw[:max(0, len(raw) - over - 8)]
        msg = {**msg, field: raw.decode("utf-8", "ignore") + "…"}
        over = _size(msg) - DEVICE_MAX_PAYLOAD
        if over <= 0:
            break
    log.warning("id=%s: %s trimmed to fit the device's %d-byte payload limit",
                _show(msg.get("id")), field, DEVICE_MAX_PAYLOAD)
    return msg


def _size(msg: dict) -> int:
    return len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _show(req_id) -> str:
    """Request ids are chosen by whoever asks: keep them from breaking the one-line-per-event log."""
    return req_id if isinstance(req_id, str) and req_id.isprintable() else repr(req_id)
