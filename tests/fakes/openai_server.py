"""Fake inference provider: a test double for paid chat-completions and Anthropic messages APIs.

Speaks the real wire formats (OpenAI chat.completion / chat.completion.chunk objects, SSE, include_usage trailer,
`data: [DONE]`, OpenAI error bodies; Anthropic /v1/messages events, see anthropic_wire.py) so the bridge is
exercised exactly as a real provider would exercise it. Each request is answered by
`responder(request_json) -> Reply`, which scripts content, timing and failures (profiles.py draws them at random).
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes import anthropic_wire

MODEL = "fake-model"

# Real OpenAI messages/types, so error-path tests see what production sees.
_ERRORS = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass
class Reply:
    text: str = ""
    calls: list[tuple[str, dict | str]] = field(default_factory=list)  # (tool name, args, or their text as sent)
    ttft_ms: float = 0  # delay before the first chunk
    chunk_delay_ms: float = 0  # delay between chunks
    arg_piece_len: int = 7  # arguments JSON is split into pieces of this many chars
    status: int = 200  # non-200 -> OpenAI-style error JSON body
    malformed: bool = False  # emit a non-JSON data line mid-stream
    cut_after_chunks: int | None = None  # close the connection after N chunks, no [DONE]
    stall_ms: float = 0  # after the first chunk, stall this long
    stall_at_chunk: int = 1  # ...or before chunk n instead (e.g. after a first tool call is complete)
    ollama_style: bool = False  # all tool calls use index 0
    retry_after: str | None = None  # Retry-After header of an error answer (429), as the provider writes it
    call_ids: list[str] | None = None  # the servers' own call ids (Kimi models served by vLLM: "functions.x:0")
    finish: str | None = None  # the stream's finish_reason ("length", "content_filter"); default tool_calls / stop


def _error_body(status: int) -> dict:
    message, etype, code = _ERRORS.get(status, (f"Fake error {status}.", "server_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def count_tokens(obj) -> int:
    """A tokenizer stand-in, independent of the bridge's estimate: words, digit runs, punctuation runs and
    underscores each count one, over the compact JSON. Like real providers, tools count as prompt."""
    return len(_TOKEN.findall(json.dumps(obj, separators=(",", ":"), ensure_ascii=False)))


_TOKEN = re.compile(r"[^\W\d_]+|\d+|[^\w\s]+|_")


def _usage(req: dict, completion_tokens: int) -> dict:
    prompt = max(1, count_tokens([req.get("messages", []), req.get("tools") or []]))
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens}


class FakeOpenAI:
    def __init__(self, responder: Callable[[dict], Reply] | None = None, api_key: str | None = None,
                 reject_stream_options: bool = False):
        self.responder = responder or (lambda req: Reply(text="ok"))
        self.api_key = api_key
        self.reject_stream_options = reject_stream_options  # like servers that 400 on unknown parameters
        self.paths: list[str] = []  # request path of each entry in .requests
        self.models = [MODEL]
        self.requests: list[dict] = []
        self.stream_ends: list[float] = []  # time.monotonic() right after each stream's last chunk was written
        self.base_url: str | None = None
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/messages", self._messages)
        # handler_cancellation: a client that gives up (timeout tests) must not leave a handler sleeping;
        # short shutdown_timeout: stop() must not wait on stalled streams.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        ready, box = threading.Event(), {}

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                box["url"] = loop.run_until_complete(self.start(host, port))
            except BaseException as e:  # surface bind errors in the caller's thread
                box["err"] = e
            ready.set()
            if "url" in box:
                loop.run_forever()
                loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if "err" in box:
            raise box["err"]
        return box["url"]

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    # ---- handlers --------------------------------------------------------------------------------------
    def ended_streams(self, n: int = 1, timeout_s: float = 2.0) -> list[float]:
        """stream_ends once n streams have ended: the fake's thread records an end after its last write
        returns, which may be a moment after the client has read that write."""
        deadline = time.monotonic() + timeout_s
        while len(self.stream_ends) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.stream_ends)

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response(_error_body(401), status=401)
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            req = await request.json()
        except ValueError:
            return web.json_response(_error_body(400), status=400)
        with self._lock:
            self.requests.append(req)
            self.paths.append(request.path)
        if not self._authorized(request):
            return web.json_response(_error_body(401), status=401)
        if self.reject_stream_options and "stream_options" in req:
            body = _error_body(400)
            body["error"].update(message="Unrecognized request argument supplied: stream_options",
                                 param="stream_options")
            return web.json_response(body, status=400)
        reply = self.responder(req)
        if reply.status != 200:
            return web.json_response(_error_body(reply.status), status=reply.status,
                                     headers={"Retry-After": reply.retry_after} if reply.retry_after else None)
        if req.get("stream"):
            return await self._stream(request, [("", c) for c in self._chunks(req, reply)], reply)
        return web.json_response(self._completion(req, reply))

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic messages API: x-api-key auth, `anthropic-version` required, streamed events."""
        try:
            req = await request.json()
        except ValueError:
            return web.json_response(anthropic_wire.error_body(400), status=400)
        with self._lock:
            self.requests.append(req)
            self.paths.append(request.path)
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return web.json_response(anthropic_wire.error_body(401), status=401)
        if not request.headers.get("anthropic-version") or not isinstance(req.get("max_tokens"), int):
            return web.json_response(anthropic_wire.error_body(400), status=400)
        reply = self.responder(req)
        if reply.status != 200:
            return web.json_response(anthropic_wire.error_body(reply.status), status=reply.status)
        if req.get("stream"):
            return await self._stream(request, anthropic_wire.events(req, reply), reply)
        return web.json_response(anthropic_wire.message(req, reply))

    def _completion(self, req: dict, reply: Reply) -> dict:
        message = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.calls:
            message["tool_calls"] = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                      "function": {"name": n, "arguments": json.dumps(a)}} for n, a in reply.calls]
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:29]}", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", MODEL), "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if reply.calls else "stop"}],
                "usage": _usage(req, max(1, len(reply.text) // 4 + len(reply.calls) * 8))}

    def _chunks(self, req: dict, reply: Reply) -> list[str]:
        """Every SSE data payload of the streamed answer, in order, ending with [DONE]."""
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:29]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": req.get("model", MODEL), "system_fingerprint": "fp_fake"}

        def chunk(delta: dict, finish: str | None = None) -> str:
            c = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                c["usage"] = None  # OpenAI sends an explicit null on every chunk but the trailer
            return json.dumps(c, ensure_ascii=False)  # real servers send raw UTF-8

        deltas: list[dict] = [{"role": "assistant", "content": "" if reply.text or not reply.calls else None,
                               "refusal": None}]
        deltas += [{"content": p} for p in re.findall(r"\s*\S+\s*|\s+", reply.text)]
        for i, (name, args) in enumerate(reply.calls):
            index = 0 if reply.ollama_style else i
            cid = reply.call_ids[i] if reply.call_ids else f"call_{uuid.uuid4().hex[:24]}"
            head = {"index": index, "id": cid, "type": "function",
                    "function": {"name": name, "arguments": ""}}
            if len(deltas) == 1 and not reply.text:
                deltas[0]["tool_calls"] = [head]  # like OpenAI: first call rides on the role chunk
            else:
                deltas.append({"tool_calls": [head]})
            raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            n = max(1, reply.arg_piece_len)
            deltas += [{"tool_calls": [{"index": index, "function": {"arguments": raw[k:k + n]}}]}
                       for k in range(0, len(raw), n)]
        out = [chunk(d) for d in deltas]
        out.append(chunk({}, reply.finish or ("tool_calls" if reply.calls else "stop")))
        if include_usage:
            out.append(json.dumps({**base, "choices": [], "usage": _usage(req, len(deltas) - 1)}))
        if reply.malformed:
            out.insert(min(2, len(out)), '{"id": "chatcmpl-broken", "choices": [')
        return out + ["[DONE]"]

    async def _stream(self, request: web.Request, events: list[tuple[str, str]], reply: Reply) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)  # headers go out at once, like llama.cpp/vLLM; the body waits for ttft
        if reply.ttft_ms:
            await asyncio.sleep(reply.ttft_ms / 1000)
        for n, (event, payload) in enumerate(events):
            if reply.cut_after_chunks is not None and n >= reply.cut_after_chunks:
                request.transport.close()  # abrupt: no [DONE], no chunked-encoding terminator
                return resp
            if n == reply.stall_at_chunk and reply.stall_ms:
                await asyncio.sleep(reply.stall_ms / 1000)
            elif n and reply.chunk_delay_ms:
                await asyncio.sleep(reply.chunk_delay_ms / 1000)
            await resp.write((f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode())
        with self._lock:
            self.stream_ends.append(time.monotonic())
        await resp.write_eof()
        return resp
