"""Streamed OpenAI chat-completions client, shared by every OpenAI-compatible tier.

OpenAI, llama.cpp server, vLLM and Ollama (/v1) all speak the same wire format: Server-Sent Events whose
`data:` lines carry `chat.completion.chunk` JSON objects, terminated by `data: [DONE]`. Tool calls arrive as
argument fragments; we hand each call to the caller as soon as it is complete so the device can start acting
on the first call while the model is still generating the next one.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

_EXCERPT = 200  # chars of server text quoted in error messages: enough to diagnose, short enough to log


class ProviderError(Exception):
    """kind: 'http' | 'timeout' | 'malformed' | 'cut' | 'connect'.

    message is human readable and never contains the API key; status is the HTTP status for 'http' errors."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.status = status


@dataclass
class ToolCall:
    cid: str  # the provider's tool_call id, or "call_<n>" if the server omitted it
    name: str
    args: dict | None  # parsed JSON object; None when the arguments were not a JSON object
    raw_args: str  # concatenated argument string as received
    error: str | None = None  # why args is None (or the call has no name)


@dataclass
class StreamEvent:
    kind: str  # 'call' | 'text' | 'done'
    call: ToolCall | None = None
    text: str = ""
    finish_reason: str | None = None
    usage: dict | None = None


class SSEDecoder:
    """Incremental Server-Sent-Events decoder: feed(bytes) -> list[str] of complete `data:` payloads.

    Lines are split on b"\\n" before decoding: 0x0A never occurs inside a multi-byte UTF-8 sequence, so a
    character split across network chunks simply waits in the buffer with the rest of its line.
    Lone-CR line endings (legal SSE, unused by any inference server) are not supported.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        head, sep, self._buf = (self._buf + chunk).rpartition(b"\n")
        out: list[str] = []
        if sep:
            for raw in head.split(b"\n"):
                self._line(raw, out)
        return out

    def flush(self) -> list[str]:
        """End of stream. Lenient: dispatches an event lacking its final blank line (some servers do that)."""
        out: list[str] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, raw: bytes, out: list[str]) -> None:
        line = raw.decode("utf-8", errors="replace").removesuffix("\r")
        if not line:  # blank line dispatches the event
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(":"):  # comment / keep-alive
            return
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        # event:, id:, retry: carry nothing an inference stream needs


def _parse_args(raw: str) -> tuple[dict | None, str | None]:
    if not raw.strip():
        return {}, None  # some servers send "" (not "{}") for tools without parameters
    try:
        val = json.loads(raw)
    except ValueError as e:
        return None, f"arguments are not valid JSON: {e}"
    if not isinstance(val, dict):
        return None, f"arguments are not a JSON object (got {type(val).__name__})"
    return val, None


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
            idx = frag.get("index") if isinstance(frag.get("index"), int) else 0
            fid = frag.get("id") or None
            cur = self._cur
            if cur is not None and (idx != cur["index"] or (fid and cur["id"] and fid != cur["id"])):
                done.append(self._close())
                cur = None
            if cur is None:
                cur = self._cur = {"index": idx, "id": None, "name": "", "args": []}
            cur["id"] = cur["id"] or fid
            fn = frag.get("function") if isinstance(frag.get("function"), dict) else {}
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
        args, err = _parse_args(raw)
        if not cur["name"]:
            err = err or "tool call has no function name"
        call = ToolCall(cur["id"] or f"call_{self._count}", cur["name"], args, raw, err)
        self._count += 1
        return call


def _error_text(obj) -> str:
    """Best human-readable message from an OpenAI-style error body (or anything else)."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or json.dumps(err)
    return " ".join(str(err).split())[:_EXCERPT]


@dataclass
class _Turn:
    asm: ToolCallAssembler
    finish_reason: str | None = None
    usage: dict | None = None


class OpenAICompatProvider:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, model: str, api_key: str | None = None,
                 connect_timeout_s: float = 5.0, first_token_timeout_s: float = 30.0, idle_timeout_s: float = 30.0,
                 extra_body: dict | None = None):
        self._session = session
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._extra_body = dict(extra_body or {})

    def _fail(self, kind: str, message: str, status: int | None = None) -> ProviderError:
        # Servers sometimes echo the key back (e.g. "Incorrect API key provided: sk-..."); errors end up in logs.
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return ProviderError(kind, message, status)

    async def stream_chat(self, messages: list[dict], tools: list[dict] | None = None):
        """Async generator of StreamEvent: 'text' deltas, a 'call' per completed tool call, one final 'done'.

        Raises ProviderError. A caller that stops iterating early should `aclose()` the generator (or use
        contextlib.aclosing) so the HTTP connection is released at once rather than at garbage collection.
        """
        body = {"model": self._model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}}
        if tools:
            body["tools"] = tools
        body.update(self._extra_body)
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + self._first_token_timeout_s
        # We enforce first-token/idle deadlines ourselves; override the session's default total timeout,
        # which would otherwise kill long but healthy generations.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s)
        try:
            async with asyncio.timeout_at(first_deadline):
                resp = await self._session.post(self._url, json=body, headers=headers, timeout=timeout)
        except aiohttp.ServerTimeoutError as e:  # before TimeoutError: it subclasses it
            raise self._fail("connect", f"connect to {self._url} timed out after {self._connect_timeout_s}s") from e
        except aiohttp.ClientError as e:
            raise self._fail("connect", f"cannot reach {self._url}: {e}") from e
        except TimeoutError as e:
            raise self._fail("timeout", f"no first token within {self._first_token_timeout_s}s (no headers)") from e

        turn = _Turn(ToolCallAssembler())
        async with resp:
            if resp.status // 100 != 2:
                excerpt, _ = await self._body_excerpt(resp)
                raise self._fail("http", f"HTTP {resp.status}: {excerpt}", resp.status)
            if resp.content_type == "application/json":  # server ignored stream:true, or a 200 carrying an error
                excerpt, is_error = await self._body_excerpt(resp)
                raise self._fail("http" if is_error else "malformed",
                                 f"expected an event stream, got JSON: {excerpt}", resp.status)
            decoder, got_data, saw_done = SSEDecoder(), False, False
            while not saw_done:
                # Until the first data payload the absolute first-token deadline applies (keep-alive comments
                # do not extend it); afterwards any gap between network reads is bounded by the idle timeout.
                deadline = loop.time() + self._idle_timeout_s if got_data else first_deadline
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await resp.content.readany()
                except TimeoutError as e:
                    what = (f"stream idle for more than {self._idle_timeout_s}s" if got_data
                            else f"no first token within {self._first_token_timeout_s}s")
                    raise self._fail("timeout", what) from e
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
                    if turn.finish_reason is not None:
                        break  # the answer was complete; only the usage/[DONE] trailer was lost
                    raise self._fail("cut", f"connection lost mid-stream: {e}") from e
                for payload in decoder.feed(chunk) if chunk else decoder.flush():
                    got_data = True
                    if payload.strip() == "[DONE]":
                        saw_done = True
                        break
                    for ev in self._events(payload, turn):
                        yield ev
                if not chunk:
                    break
        if not saw_done and turn.finish_reason is None:
            raise self._fail("cut", "stream ended without [DONE] and without a finish_reason")
        for call in turn.asm.finish():
            yield StreamEvent("call", call=call)
        yield StreamEvent("done", finish_reason=turn.finish_reason, usage=turn.usage)

    async def _body_excerpt(self, resp: aiohttp.ClientResponse) -> tuple[str, bool]:
        """(short readable excerpt of the body, whether it was an OpenAI-style {"error": ...} object)."""
        try:
            async with asyncio.timeout(self._idle_timeout_s):
                text = (await resp.read()).decode("utf-8", errors="replace")
        except (TimeoutError, aiohttp.ClientError):
            return "(error body unreadable)", False
        try:
            obj = json.loads(text)
        except ValueError:
            return _error_text(text) or "(empty body)", False
        return _error_text(obj), isinstance(obj, dict) and bool(obj.get("error"))

    def _events(self, payload: str, turn: _Turn) -> list[StreamEvent]:
        def bad(why: str) -> ProviderError:
            return self._fail("malformed", f"{why}: {payload[:_EXCERPT]!r}")

        if not payload.strip():
            return []  # empty data line used as keep-alive
        try:
            obj = json.loads(payload)
        except ValueError:
            raise bad("data is not JSON") from None
        if not isinstance(obj, dict):
            raise bad("data is not a JSON object")
        if obj.get("error"):  # mid-stream failure (overload, content filter, ...) reported in-band
            raise self._fail("http", f"error in stream: {_error_text(obj)}")
        has_usage = isinstance(obj.get("usage"), dict)
        turn.usage = obj["usage"] if has_usage else turn.usage
        choices = obj.get("choices")
        if choices is None and has_usage:
            return []  # usage-only chunk without a choices key
        if not isinstance(choices, list):
            raise bad("chunk has no choices list")
        if not choices:
            return []  # include_usage trailer, or Azure's prompt_filter_results chunk
        choice = choices[0]
        delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise bad("choice has no delta object")
        out: list[StreamEvent] = []
        if isinstance(delta.get("content"), str) and delta["content"]:
            out.append(StreamEvent("text", text=delta["content"]))
        if isinstance(delta.get("tool_calls"), list):
            out += [StreamEvent("call", call=c) for c in turn.asm.feed(delta["tool_calls"])]
        if choice.get("finish_reason"):
            turn.finish_reason = choice["finish_reason"]
            # finish_reason means every call is complete; don't make the device wait for the usage trailer
            out += [StreamEvent("call", call=c) for c in turn.asm.finish()]
        return out
