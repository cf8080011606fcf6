"""Streamed OpenAI chat-completions client, shared by every OpenAI-compatible tier.

OpenAI, Cerebras, Groq, Together, llama.cpp server, vLLM and Ollama (/v1) all speak this wire format: SSE whose
`data:` lines carry `chat.completion.chunk` objects, ending with `data: [DONE]`. Tool calls arrive as argument
fragments; each call goes to the caller as soon as it is complete, so the device can act on the first call while
the model is still generating the next. Quirks handled here: Ollama's index-0 calls, servers that reject
`stream_options`, usage only in the last chunk (or never, when the stream is cut), failures reported inside
the stream (llama-server's `code`, vLLM's error object: base.py `in_band_error`).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlparse

from bridge.providers.base import (  # noqa: F401
    EXCERPT,
    HttpStreamProvider,
    ProviderError,
    SSEDecoder,
    StreamEvent,
    ToolCall,
    error_code,
    error_status,
    error_text,
    in_band_error,
    parse_args,
    token_cap,
)
from bridge.providers.schemas import restore_args, translate

# base URLs whose server answered 400 to `stream_options`: ask them without it from then on (per process)
_NO_STREAM_OPTIONS: set[str] = set()

# Hosts that speak OpenAI's current chat API: the output limit as max_completion_tokens, and the `developer`
# role. OpenAI's reasoning models (o-series, gpt-5) answer 400 "Unsupported parameter: 'max_tokens' ... Use
# 'max_completion_tokens'", and Cerebras documents only max_completion_tokens for chat (it counts gpt-oss's
# reasoning tokens too). Every other server gets max_tokens: Ollama's /v1 lists only max_tokens, and
# llama-server read only max_tokens (or n_predict) before it learnt the new name, so max_tokens is the one
# every version of both honours. And they get a `developer` message as `system`: their chat templates refuse
# a role they do not know (vLLM, llama-server before 2026) or skip it (Ollama), and the instructions are lost.
_COMPLETION_TOKENS_HOSTS = ("api.openai.com", "api.cerebras.ai")


def current_api(base_url: str) -> bool:
    """Whether the server at base_url speaks OpenAI's current chat API (above)."""
    return (urlparse(base_url).hostname or "") in _COMPLETION_TOKENS_HOSTS


def cap_field(base_url: str) -> str:
    """The body field that carries the output-token limit for the server at base_url."""
    return "max_completion_tokens" if current_api(base_url) else "max_tokens"


class ToolCallAssembler:
    """Accumulates `choices[0].delta.tool_calls` fragments into complete ToolCalls.

    A call is complete once a fragment for another index arrives (providers stream calls in order), or at
    finish(). Ollama sends every call at index 0, so a fragment carrying a NEW id also starts a new call.
    """

    def __init__(self) -> None:
        self._cur: dict | None = None
        self._count = 0  # calls closed so far, used to name calls whose id the server omitted

    def feed(self, delta_tool_calls: list) -> list[ToolCall]:
        done: list[ToolCall] = []
        for frag in delta_tool_calls or []:
            if not isinstance(frag, dict):
                continue
            idx = frag.get("index")
            if not isinstance(idx, int):
                idx = 0
            fid = frag.get("id")
            if not (fid and isinstance(fid, str)):  # ids are strings
                fid = None
            cur = self._cur
            if cur is not None and (idx != cur["index"] or (fid and cur["id"] and fid != cur["id"])):
                done.append(self._close())
                cur = None
            if cur is None:
                cur = self._cur = {"index": idx, "id": None, "name": "", "args": []}
            cur["id"] = cur["id"] or fid
            fn = frag.get("function")
            if not isinstance(fn, dict):
                fn = {}
            name = fn.get("name")
            # Names are deltas in the spec, but some servers repeat the full name on every fragment.
            if isinstance(name, str) and name and name != cur["name"]:
                cur["name"] += name
            args = fn.get("arguments")
            if isinstance(args, str):
                cur["args"].append(args)
            elif isinstance(args, dict):  # a few servers send an already-parsed object
                cur["args"].append(json.dumps(args))
        return done

    def finish(self) -> list[ToolCall]:
        return [self._close()] if self._cur is not None else []

    def _close(self) -> ToolCall:
        cur, self._cur = self._cur, None
        raw = "".join(cur["args"])
        args, err = parse_args(raw)
        if not cur["name"]:
            err = err or "tool call has no function name"
        call = ToolCall(cur["id"] or f"call_{self._count}", cur["name"], args, raw, err)
        self._count += 1
        return call


@dataclass
class _Turn:
    asm: ToolCallAssembler
    finish_reason: str | None = None
    usage: dict | None = None


class OpenAICompatProvider(HttpStreamProvider):
    def __init__(self, session, base_url: str, model: str, api_key: str | None = None,
                 max_tokens: int | None = None, **kw):
        super().__init__(session, base_url.rstrip("/") + "/chat/completions", model, api_key, **kw)
        self._base_url = base_url
        self._max_tokens = max_tokens  # the tier's ceiling from wisp.toml; None: the server's own default
        self._cap_field = cap_field(base_url)
        self._developer_role = current_api(base_url)

    async def stream_chat(self, messages: list[dict], tools: list[dict] | None = None, options: dict | None = None):
        """Async generator of StreamEvent: 'text' deltas, a 'call' per completed tool call, one final 'done'.

        Raises ProviderError. A caller that stops iterating early should `aclose()` the generator (or use
        contextlib.aclosing) so the HTTP connection is released at once rather than at garbage collection.
        """
        if not self._developer_role and any(m.get("role") == "developer" for m in messages):
            messages = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]
        body = {"model": self._model, "messages": messages, "stream": True}
        if self._base_url not in _NO_STREAM_OPTIONS:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = translate(self._family, tools)
        options = dict(options or {})
        cap = token_cap(options, self._max_tokens)  # takes both limit names out of options
        body.update(options)  # /v1 callers' sampling options (bridge/web/v1.py FORWARDED), as they sent them
        if cap is not None:
            body[self._cap_field] = cap  # under one name only: never max_tokens next to max_completion_tokens
        body.update(self._extra_body)
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + self._first_token_timeout_s
        resp = await self._post(body, headers, first_deadline)
        try:
            await self._check_status(resp)
        except ProviderError as e:
            resp.release()
            if "--jinja" in e.message and tools:
                # llama-server without jinja (before late 2025 its default; since, `--no-jinja`) answers every
                # request with tools so: a configuration error (not retried, not a breaker failure), and the
                # user is told the fix
                raise self._fail("http", f"{e.message}; start llama-server with --jinja (and without --no-jinja), "
                                 "without it the server cannot take tools", 400) from None
            if e.status != 400 or "stream_options" not in e.message or "stream_options" not in body:
                raise
            # Some OpenAI-compatible servers reject the option outright; usage then arrives (or not) without it.
            _NO_STREAM_OPTIONS.add(self._base_url)
            body.pop("stream_options")
            resp = await self._post(body, headers, first_deadline)
            try:
                await self._check_status(resp)
            except ProviderError:
                resp.release()
                raise
        turn, saw_done = _Turn(ToolCallAssembler()), False
        async with resp:
            reader = self._reader(resp, first_deadline, lambda: turn.finish_reason is not None)
            while not saw_done and (payloads := await reader.next()) is not None:
                for payload in payloads:
                    if payload.strip() == "[DONE]":
                        saw_done = True
                        break
                    for ev in self._events(payload, turn):
                        yield self._restored(ev, tools) if ev.kind == "call" else ev
        if not saw_done and turn.finish_reason is None:
            raise self._fail("cut", "stream ended without [DONE] and without a finish_reason")
        for call in turn.asm.finish():
            yield self._restored(StreamEvent("call", call=call), tools)
        yield StreamEvent("done", finish_reason=turn.finish_reason, usage=turn.usage)

    def _restored(self, ev: StreamEvent, tools: list[dict] | None) -> StreamEvent:
        if ev.kind == "call" and ev.call.args is not None:
            ev.call.args = restore_args(self._family, tools, ev.call.name, ev.call.args)
        return ev

    def _bad(self, why: str, payload: str) -> ProviderError:
        return self._fail("malformed", f"{why}: {payload[:EXCERPT]!r}")

    def _events(self, payload: str, turn: _Turn) -> list[StreamEvent]:
        if not payload.strip():
            return []  # empty data line used as keep-alive
        obj = self._json(payload)
        if in_band_error(obj):  # mid-stream failure (overload, prompt over the context size, ...) reported in-band
            raise self._fail("http", f"error in stream: {error_text(obj)}", error_status(obj), code=error_code(obj))
        usage = obj.get("usage")
        has_usage = isinstance(usage, dict)
        if has_usage:
            turn.usage = usage
        choices = obj.get("choices")
        if choices is None and has_usage:
            return []  # usage-only chunk without a choices key
        if not isinstance(choices, list):
            raise self._bad("chunk has no choices list", payload)
        if not choices:
            return []  # include_usage trailer, or Azure's prompt_filter_results chunk
        choice = choices[0]
        delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise self._bad("choice has no delta object", payload)
        out: list[StreamEvent] = []
        # Only `content` is the answer. Reasoning models stream their thinking beside it, in `reasoning`
        # (Cerebras gpt-oss) or `reasoning_content` (vLLM, llama-server, DeepSeek): never shown to
        # anyone, and no output for hedging either (hedge.py counts the first text or call).
        content = delta.get("content")
        if content and isinstance(content, str):
            out.append(StreamEvent("text", text=content))
        fragments = delta.get("tool_calls")
        if fragments and isinstance(fragments, list):
            out += [StreamEvent("call", call=c) for c in turn.asm.feed(fragments)]
        finish = choice.get("finish_reason")
        if finish:
            turn.finish_reason = finish
            # finish_reason means every call is complete; don't make the device wait for the usage trailer
            out += [StreamEvent("call", call=c) for c in turn.asm.finish()]
        return out
