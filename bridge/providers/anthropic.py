"""Streamed Anthropic messages client with tools, behind the same interface as the OpenAI-compatible one.

Input is the bridge's one internal format (OpenAI chat messages and tools); it is mapped to the messages API
here: the system prompt moves to `system`, tool calls become `tool_use` blocks, tool results become
`tool_result` blocks in a user turn. The stream (message_start, content_block_start/delta/stop, message_delta,
message_stop, ping, error) maps back onto StreamEvents; usage is reported OpenAI-shaped.
"""
from __future__ import annotations

import asyncio

from bridge.providers.base import (
    EXCERPT,
    HttpStreamProvider,
    ProviderError,
    StreamEvent,
    ToolCall,
    error_text,
    parse_args,
    token_cap,
)
from bridge.providers.schemas import translate

API_VERSION = "2023-06-01"
_CACHE = {"type": "ephemeral"}


def to_anthropic(messages: list[dict], tools: list[dict] | None) -> tuple[str, list[dict], list[dict]]:
    """(system, messages, tools) in the messages-API shape; consecutive same-role turns are merged."""
    system, out = [], []

    def add(role: str, blocks: list[dict]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        elif blocks:
            out.append({"role": role, "content": blocks})

    for m in messages:
        role, content = m.get("role"), _text(m.get("content"))
        # A text block of only whitespace is a 400 ("text content blocks must contain non-whitespace text"),
        # e.g. the "\n\n" a model streams before its tool call: such text is left out. A turn left with no
        # block at all is not sent (empty content is refused too); its neighbours, now of one role, merge.
        text = [{"type": "text", "text": content}] if content.strip() else []
        if role in ("system", "developer"):  # OpenAI's newer name for the instructions (o-series, gpt-5)
            system.append(content)
        elif role == "user":
            add("user", _user_blocks(m.get("content")))
        elif role == "assistant":
            blocks = text
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                args, _ = parse_args(fn.get("arguments") or "")
                blocks.append({"type": "tool_use", "id": c.get("id"), "name": fn.get("name"), "input": args or {}})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": content}])
    a_tools = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
               for t in tools or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    return "\n\n".join(s for s in system if s.strip()), out, a_tools


def _user_blocks(content) -> list[dict]:
    """A user turn's OpenAI content parts as Messages-API blocks, in order: text, and images (an `image_url`
    that is a base64 data: URL, or a URL Anthropic fetches). A part with no Anthropic equivalent (audio, a
    file) is a refusal, so another tier may take the request: never dropped without a word."""
    if not isinstance(content, list):
        text = _text(content)
        return [{"type": "text", "text": text}] if text.strip() else []
    blocks = []
    for p in content:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            if isinstance(p.get("text"), str) and p["text"].strip():
                blocks.append({"type": "text", "text": p["text"]})
        elif kind == "image_url":
            image = p.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise ProviderError("http", "an image_url part without a url", 400)
            head, _, data = url.partition(",")
            if head.startswith("data:") and head.endswith(";base64"):
                source = {"type": "base64", "media_type": head[5:-7], "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        else:
            raise ProviderError("http", f"a {kind!r} content part has no Anthropic equivalent", 400)
    return blocks


def _text(content) -> str:
    """OpenAI content is a string or a list of parts; only text parts mean anything to a wisp device."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


class AnthropicProvider(HttpStreamProvider):
    def __init__(self, session, base_url: str, model: str, api_key: str | None = None, max_tokens: int = 1024,
                 cap: int | None = None, **kw):
        super().__init__(session, base_url.rstrip("/") + "/messages", model, api_key, **kw)
        self._max_tokens = max_tokens  # required by the API: sent when nothing else sets the limit
        self._cap = cap  # the tier's ceiling from wisp.toml, if it sets one (token_cap)

    async def stream_chat(self, messages: list[dict], tools: list[dict] | None = None, options: dict | None = None):
        """Same contract as OpenAICompatProvider.stream_chat."""
        system, a_messages, a_tools = to_anthropic(messages, translate("anthropic", tools))
        options = dict(options or {})
        cap = token_cap(options, self._cap)
        body = {"model": self._model, "max_tokens": self._max_tokens if cap is None else cap,
                "messages": a_messages, "stream": True}
        # Prompt caching: tools, then system, are the stable prefix of every round of a device; a
        # breakpoint after each lets a round reuse them (a prefix under the model's minimum is not cached,
        # and not refused either).
        if system:
            body["system"] = [{"type": "text", "text": system, "cache_control": _CACHE}]
        if a_tools:
            a_tools[-1] = {**a_tools[-1], "cache_control": _CACHE}
            body["tools"] = a_tools
        body.update(_anthropic_options(options, bool(a_tools)))
        body.update(self._extra_body)
        headers = {"Accept": "text/event-stream", "anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        first_deadline = asyncio.get_running_loop().time() + self._first_token_timeout_s
        resp = await self._post(body, headers, first_deadline)
        state = {"blocks": {}, "usage": {}, "stop": None, "ended": False}
        async with resp:
            await self._check_status(resp)
            reader = self._reader(resp, first_deadline, lambda: state["stop"] is not None)
            while not state["ended"] and (payloads := await reader.next()) is not None:
                for payload in payloads:
                    for ev in self._events(payload, state):
                        yield ev
                    if state["ended"]:
                        break
        if state["stop"] is None:
            raise self._fail("cut", "stream ended before message_delta carried a stop_reason")
        usage = state["usage"]
        yield StreamEvent("done", finish_reason=_FINISH.get(state["stop"], state["stop"]),
                          usage={"prompt_tokens": usage["in"], "completion_tokens": usage["out"]}
                          if "in" in usage and "out" in usage else None)

    def _events(self, payload: str, state: dict) -> list[StreamEvent]:
        if not payload.strip():
            return []
        obj = self._json(payload)
        kind = obj.get("type")
        blocks = state["blocks"]
        if kind == "message_start":
            u = (obj.get("message") or {}).get("usage") or {}
            if isinstance(u.get("input_tokens"), int):
                # input_tokens leaves out what was read from or written to the prompt cache
                state["usage"]["in"] = u["input_tokens"] + (u.get("cache_read_input_tokens") or 0) \
                    + (u.get("cache_creation_input_tokens") or 0)
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            blocks[obj.get("index")] = {"type": block.get("type"), "id": block.get("id"),
                                        "name": block.get("name"), "json": []}
            if block.get("type") == "text" and block.get("text"):
                return [StreamEvent("text", text=block["text"])]
        elif kind == "content_block_delta":
            delta, block = obj.get("delta") or {}, blocks.get(obj.get("index"))
            if block is None:
                raise self._fail("malformed", f"delta for a block that never started: {payload[:EXCERPT]!r}")
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                return [StreamEvent("text", text=delta["text"])] if delta["text"] else []
            if delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                block["json"].append(delta["partial_json"])
        elif kind == "content_block_stop":
            block = blocks.pop(obj.get("index"), None)
            if block and block["type"] == "tool_use":
                raw = "".join(block["json"])
                args, err = parse_args(raw)
                if not block["name"]:
                    err = err or "tool call has no function name"
                return [StreamEvent("call", call=ToolCall(block["id"] or f"toolu_{obj.get('index')}",
                                                          block["name"] or "", args, raw, err))]
        elif kind == "message_delta":
            u = obj.get("usage") or {}
            if isinstance(u.get("output_tokens"), int):
                state["usage"]["out"] = u["output_tokens"]
            stop = (obj.get("delta") or {}).get("stop_reason")
            state["stop"] = stop or state["stop"] or "end_turn"
        elif kind == "message_stop":
            state["ended"] = True
            state["stop"] = state["stop"] or "end_turn"
        elif kind == "error":  # overloaded_error and friends, in-band after a 200
            raise self._fail("http", f"error in stream: {error_text(obj)}")
        # ping and unknown future event types carry nothing we need
        return []


# stop_reason as the finish_reason OpenAI's chat API names it (its SDK's type allows no other value, and /v1
# callers get it as is): a streaming classifier's "refusal" is what OpenAI calls a content filter, and
# "model_context_window_exceeded" (newer models) an answer cut at a length limit
_FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "stop_sequence": "stop",
           "refusal": "content_filter", "model_context_window_exceeded": "length"}
_OPTIONS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "tool_choice",
            "parallel_tool_calls", "user")


def _anthropic_options(options: dict, has_tools: bool) -> dict:
    """OpenAI-style sampling options in the Messages API's terms; what it cannot honour is a refusal
    (HTTP-400-like, so another tier may take the request), never silently dropped."""
    out = {}
    for key in ("temperature", "top_p"):
        if key in options:
            out[key] = options[key]
    if "stop" in options:
        out["stop_sequences"] = [options["stop"]] if isinstance(options["stop"], str) else options["stop"]
    choice = options.get("tool_choice")
    if choice is not None:
        named = isinstance(choice, dict) and (choice.get("function") or {}).get("name")
        mapped = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(choice) \
            if isinstance(choice, str) else ({"type": "tool", "name": named} if named else None)
        if mapped is None:
            raise ProviderError("http", f"tool_choice {choice!r} has no Anthropic equivalent", 400)
        out["tool_choice"] = mapped
    # at most one call per turn: a flag of tool_choice there (auto unless the caller chose); a tool_choice
    # without tools is refused, and "none" has no such flag (it makes no call at all)
    if options.get("parallel_tool_calls") is False and has_tools:
        tc = out.get("tool_choice", {"type": "auto"})
        if tc["type"] != "none":
            out["tool_choice"] = {**tc, "disable_parallel_tool_use": True}
    if options.get("user") is not None:
        out["metadata"] = {"user_id": options["user"]}  # the end user's opaque id, as OpenAI's `user` is
    for key in options:
        if key not in _OPTIONS:
            raise ProviderError("http", f"'{key}' is not supported by the Anthropic messages API", 400)
    return out

