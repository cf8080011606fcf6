"""The OpenAI-compatible endpoint: POST /v1/chat/completions (streamed or not, tools passed through) and
GET /v1/models through the same router as device requests; GET /v1/wisp/stats shows the live tier statistics.
Every error is an OpenAI-style JSON body.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid

from aiohttp import web

from bridge.config import REQUEST_CLASSES
from bridge.cost import seconds_to_next_day
from bridge.providers.tokens import estimate_tokens
from bridge.reasons import Failure, Reason
from bridge.routing.hedge import RESET, stream_turn
from bridge.web.body import read_json
from bridge.web.closing import SHUTTING_DOWN, ShuttingDown, unless_closing
from bridge.web.errors import error
from bridge.web.keys import COSTS, ROUTER

log = logging.getLogger("wisp.bridge.http")

HTTP_DEADLINE_S = 120.0  # one completion, end to end: HTTP clients have no budget_ms
# A streamed answer silent this long gets an SSE comment line: proxies cut a response that sends nothing for
# their read timeout (nginx: 60 s), and a slow tier's first token, or a long pause between tool calls, can take
# longer. Comments are ignored by every SSE client.
KEEPALIVE_S = 15.0
API_DEVICE = "http-api"  # the cost store's "device" for requests made over /v1
# HTTP status per failure; any other is a bad gateway
_STATUS = {Reason.TIMEOUT: 504, Reason.UNAVAILABLE: 503, Reason.SHUTTING_DOWN: 503}


async def models(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    ids = [*REQUEST_CLASSES, *router.config.tiers]
    return web.json_response({"object": "list", "data": [
        {"id": i, "object": "model", "created": 0, "owned_by": "wisp"} for i in ids]})


async def model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: what `client.models.retrieve(...)` asks."""
    name, router = request.match_info["model"], request.app[ROUTER]
    if name not in (*REQUEST_CLASSES, *router.config.tiers):
        return error(404, f"model '{name}' does not exist", code="model_not_found")
    return web.json_response({"id": name, "object": "model", "created": 0, "owned_by": "wisp"})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[ROUTER].snapshot())


# OpenAI chat-completion options passed on to the tier as the caller sent them; the rest of the API's
# options are refused with a 400 rather than silently ignored
FORWARDED = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
             "frequency_penalty", "tool_choice", "response_format", "user", "parallel_tool_calls")
_OURS = ("model", "messages", "tools", "stream", "stream_options")


def options_of(body: dict) -> tuple[dict, str | None]:
    """(options to forward, or the reason the request is refused)."""
    n = body.get("n", 1)
    if n is not None and (isinstance(n, bool) or n != 1):
        return {}, "'n' must be 1: the bridge returns one choice per request"
    unknown = sorted(k for k in body if k not in FORWARDED and k not in _OURS and k != "n")
    if unknown:
        return {}, f"not supported by this bridge: {', '.join(unknown)} (supported: {', '.join(FORWARDED)})"
    return {k: body[k] for k in FORWARDED if k in body}, None


def _read(body: object) -> tuple[dict | None, str | None]:
    if not isinstance(body, dict):
        return None, "the request body must be a JSON object"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                         for m in msgs):
        return None, "'messages' must be a non-empty list of objects with a 'role'"
    if not isinstance(body.get("model"), str):
        return None, "'model' must be a string: a request class (interactive, scheduled, private) or a tier name"
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        return None, "'tools' must be a list"
    # wrong types are refused, not coerced: bool("false") is True, and a string has no .get()
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        return None, "'stream' must be true or false"
    stream_options = body.get("stream_options")
    if stream_options is not None and not (isinstance(stream_options, dict) and isinstance(
            stream_options.get("include_usage", False), bool)):
        return None, "'stream_options' must be an object such as {\"include_usage\": true}"
    return body, None


async def chat(request: web.Request) -> web.StreamResponse:
    router, costs = request.app[ROUTER], request.app[COSTS]
    body, problem = _read(await read_json(request))  # bad JSON raises BadRequest: an error like the others
    if problem:
        return error(400, problem)
    options, problem = options_of(body)
    if problem:
        return error(400, problem, code="unsupported_parameter")
    model = body["model"]
    if model in REQUEST_CLASSES:
        tiers, req_class = router.route(model), model
    elif model in router.config.tiers:
        tiers, req_class = [router.config.tiers[model]], "interactive"
    else:
        return error(404, f"model '{model}' does not exist; use a request class ({', '.join(REQUEST_CLASSES)}) "
                     f"or a tier ({', '.join(router.config.tiers) or 'none configured'})", code="model_not_found")
    refusal = await costs.check_budget(API_DEVICE)
    if refusal:  # Retry-After (RFC 9110, section 10.2.3): when the budget resets, not sooner
        resp = error(429, refusal, etype="insufficient_quota", code="insufficient_quota")
        resp.headers["Retry-After"] = str(seconds_to_next_day())
        return resp
    stream = bool(body.get("stream"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    reply = _Reply(request, model, stream, include_usage)
    deadline = asyncio.get_running_loop().time() + HTTP_DEADLINE_S
    started = time.monotonic()
    keeping_alive = asyncio.create_task(reply.keep_alive()) if stream else None

    async def answer():
        async for tier, ev in stream_turn(router, tiers, body["messages"], body.get("tools") or None, deadline,
                                          committed=lambda: reply.committed, req_class=req_class,
                                          options=options, caller="api"):
            await reply.event(tier, ev)
            if ev.kind == "done":
                costs.record(API_DEVICE, tier, reply.id, *reply.tokens(ev.usage, body["messages"], body.get("tools")))
    try:
        try:
            await unless_closing(request, answer())
        except ShuttingDown:
            raise Failure(Reason.SHUTTING_DOWN, SHUTTING_DOWN) from None
        finally:
            if keeping_alive:
                keeping_alive.cancel()
        log.info("http chat model=%s tier=%s stream=%s calls=%d total_ms=%.0f ok", model, reply.tier, stream,
                 len(reply.calls), (time.monotonic() - started) * 1000)
        return await reply.finish()
    except Failure as e:
        log.warning("http chat model=%s tier=%s err=%r", model, e.tier, e.message)
        if reply.prepared:
            return await reply.fail_in_band(e.message)
        if e.reason is Reason.RATE_LIMITED:  # the caller's client backs off as it would with the provider
            resp = error(429, e.message, etype="rate_limit_error", code="rate_limit_exceeded")
            resp.headers["Retry-After"] = str(max(1, math.ceil(e.retry_after_s or 1)))
            return resp
        if e.reason is Reason.TIER_REFUSED and e.status in (400, 413, 422):
            return error(400, e.message)  # the provider found the caller's request invalid: say so, as a 400
        return error(_STATUS.get(e.reason, 502), e.message, etype="server_error")


class _Reply:
    """Builds the OpenAI response. For a stream, headers go out with the first real output, so that a tier
    failing before then can still be replaced (or reported with a proper status), or after KEEPALIVE_S of
    silence; a tier may still be replaced until output has gone out (committed), and a failure after the
    headers is reported in the stream."""

    def __init__(self, request: web.Request, model: str, stream: bool, include_usage: bool):
        self.request, self.model, self.stream, self.include_usage = request, model, stream, include_usage
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.resp: web.StreamResponse | None = None
        self.prepared = False  # headers sent: the status can no longer change
        self.committed = False  # output sent: the client has text or a tool call that cannot be taken back
        self._writing = asyncio.Lock()  # the keep-alive task and the answer write to the same response
        self._last_write = asyncio.get_running_loop().time()
        self.text: list[str] = []
        self.calls: list[dict] = []
        self.finish_reason, self.usage, self.tier = None, None, None

    def tokens(self, usage: dict | None, messages: list, tools: list | None = None) -> tuple[int, int, bool]:
        ok = isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int) \
            and isinstance(usage.get("completion_tokens"), int)
        n_in = usage["prompt_tokens"] if ok else estimate_tokens(messages, tools)
        n_out = usage["completion_tokens"] if ok else max(1, (sum(map(len, self.text)) + sum(
            len(c["function"]["arguments"]) for c in self.calls)) // 4)
        self.usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        return n_in, n_out, not ok

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def _send(self, obj) -> None:
        data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        await self._write(f"data: {data}\n\n".encode())

    async def _write(self, event: bytes) -> None:
        async with self._writing:
            if not self.prepared:
                # X-Accel-Buffering: nginx (and proxies that follow it) would otherwise hold the events back and
                # deliver the whole answer at once
                self.resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
                await self.resp.prepare(self.request)
                self.prepared = True
                role = json.dumps(self._chunk({"role": "assistant", "content": ""}))
                await self.resp.write(f"data: {role}\n\n".encode())
            await self.resp.write(event)
            self._last_write = asyncio.get_running_loop().time()

    async def keep_alive(self) -> None:
        """Until cancelled: an SSE comment whenever the stream has been silent for KEEPALIVE_S."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._last_write + KEEPALIVE_S - loop.time()))
            if loop.time() - self._last_write >= KEEPALIVE_S:
                try:
                    await self._write(b": waiting for the model\n\n")
                except ConnectionError:  # the client left: the answer's own next write finds out too
                    return

    async def event(self, tier, ev) -> None:
        self.tier = tier.name
        if ev.kind == RESET:
            self.text.clear()
            self.calls.clear()
        elif ev.kind == "text":
            self.text.append(ev.text)
            if self.stream:
                self.committed = True
                await self._send(self._chunk({"content": ev.text}))
        elif ev.kind == "call":
            c = ev.call
            call = {"id": c.cid, "type": "function", "function": {"name": c.name, "arguments": c.raw_args or "{}"}}
            self.calls.append(call)
            if self.stream:
                self.committed = True
                await self._send(self._chunk({"tool_calls": [{"index": len(self.calls) - 1, **call}]}))
        elif ev.kind == "done":
            self.finish_reason = "tool_calls" if self.calls else (ev.finish_reason or "stop")

    async def finish(self) -> web.StreamResponse:
        if not self.stream:
            message = {"role": "assistant", "content": "".join(self.text) or None}
            if self.calls:
                message["tool_calls"] = self.calls
            return web.json_response({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
                "usage": self.usage}, headers={"x-wisp-tier": self.tier or ""})
        await self._send(self._chunk({}, self.finish_reason))
        if self.include_usage:
            await self._send({**self._chunk({}), "choices": [], "usage": self.usage})
        await self._send("[DONE]")
        await self.resp.write_eof()
        return self.resp

    async def fail_in_band(self, message: str) -> web.StreamResponse:
        await self._send({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        await self.resp.write_eof()
        return self.resp

