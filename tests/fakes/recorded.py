"""Recorded answers of real inference servers, replayed byte for byte over HTTP, for the quirks public issues
report. Each recording is what the server sends for a request offering tools: status, content type and body.

- OLLAMA_PARALLEL: Ollama's /v1 streams parallel tool calls as whole calls, every one at index 0 (a new id
  marks the next call), and ends with finish_reason "stop", not "tool_calls" (ollama/ollama issues 15457
  and pull 7963; Gemini's OpenAI layer does the same, googleapis/python-genai issue 2868).
- LLAMA_NO_JINJA: llama-server started without --jinja answers any request with tools by HTTP 500
  "tools param requires --jinja flag" (ggml-org/llama.cpp server README; many downstream issues).
- ANTHROPIC_TOOL_USE: the Messages API streams a tool's input as input_json_delta fragments, the first one
  empty, between content_block_start and content_block_stop, with ping events in between.
- ANTHROPIC_REFUSAL: a turn a streaming classifier stopped: its text so far, then stop_reason "refusal".
- USAGE_TRAILER_ONLY: OpenAI with stream_options.include_usage: "usage": null on every chunk, the counts
  only in a last chunk whose choices list is empty.
- USAGE_NEVER: an older llama-server: no usage at all, only its own "timings" on the last chunk.
"""
from __future__ import annotations

import json

from aiohttp import web


def _sse(payloads: list, events: list[str] | None = None) -> bytes:
    out = []
    for i, p in enumerate(payloads):
        data = p if isinstance(p, str) else json.dumps(p, separators=(",", ":"))
        out.append((f"event: {events[i]}\n" if events else "") + f"data: {data}\n\n")
    return "".join(out).encode()


def _ollama_chunk(delta: dict, finish=None) -> dict:
    return {"id": "chatcmpl-641", "object": "chat.completion.chunk", "created": 1733312345, "model": "qwen2.5:7b",
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


OLLAMA_PARALLEL = (200, "text/event-stream", _sse([
    _ollama_chunk({"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_x1q2", "index": 0, "type": "function",
         "function": {"name": "gpio_write", "arguments": "{\"pin\":\"porch_light\",\"value\":1}"}}]}),
    _ollama_chunk({"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_k9z3", "index": 0, "type": "function",
         "function": {"name": "gpio_write", "arguments": "{\"pin\":\"fan\",\"value\":1}"}}]}),
    _ollama_chunk({"role": "assistant", "content": "Porch light and fan are on."}),
    _ollama_chunk({"role": "assistant", "content": ""}, "stop"),
    "[DONE]"]))

LLAMA_NO_JINJA = (500, "application/json", json.dumps(
    {"error": {"code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}}).encode())


def _a(kind: str, **fields) -> dict:
    return {"type": kind, **fields}


ANTHROPIC_TOOL_USE = (200, "text/event-stream", _sse([
    _a("message_start", message={"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
                                 "content": [], "model": "claude-sonnet-4-5", "stop_reason": None,
                                 "stop_sequence": None,
                                 "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0,
                                           "cache_read_input_tokens": 380, "output_tokens": 2}}),
    _a("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _a("ping"),
    _a("content_block_delta", index=0, delta={"type": "text_delta", "text": "Porch light on."}),
    _a("content_block_stop", index=0),
    _a("content_block_start", index=1, content_block={"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                                                      "name": "gpio_write", "input": {}}),
    _a("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}),
    _a("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": "{\"pin\": \"po"}),
    _a("ping"),
    _a("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": "rch_light\", \"va"}),
    _a("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": "lue\": 1}"}),
    _a("content_block_stop", index=1),
    _a("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 41}),
    _a("message_stop")],
    ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
     "content_block_start", "content_block_delta", "content_block_delta", "ping", "content_block_delta",
     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]))

# Claude 4 models' streaming classifiers end a turn they stop with stop_reason "refusal", after the text streamed
# so far and with no message of their own (the Messages API guide "Streaming refusals").
ANTHROPIC_REFUSAL = (200, "text/event-stream", _sse([
    _a("message_start", message={"id": "msg_01Rf", "type": "message", "role": "assistant", "content": [],
                                 "model": "claude-sonnet-4-5", "stop_reason": None, "stop_sequence": None,
                                 "usage": {"input_tokens": 35, "output_tokens": 1}}),
    _a("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _a("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello.."}),
    _a("content_block_stop", index=0),
    _a("message_delta", delta={"stop_reason": "refusal", "stop_sequence": None}, usage={"output_tokens": 4}),
    _a("message_stop")],
    ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
     "message_stop"]))


def _openai_chunk(delta: dict, finish=None, usage_null=True) -> dict:
    c = {"id": "chatcmpl-AbC123", "object": "chat.completion.chunk", "created": 1733312345,
         "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
         "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage_null:
        c["usage"] = None
    return c


USAGE_TRAILER_ONLY = (200, "text/event-stream", _sse([
    _openai_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_Qx7", "type": "function", "function": {"name": "gpio_write", "arguments": ""}}],
        "refusal": None}),
    _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pin\":\"porch_light\","}}]}),
    _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"value\":1}"}}]}),
    _openai_chunk({"content": "Porch light on."}),
    _openai_chunk({}, "tool_calls"),
    {"id": "chatcmpl-AbC123", "object": "chat.completion.chunk", "created": 1733312345,
     "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1", "choices": [],
     "usage": {"prompt_tokens": 655, "completion_tokens": 19, "total_tokens": 674,
               "prompt_tokens_details": {"cached_tokens": 512}}},
    "[DONE]"]))

USAGE_NEVER = (200, "text/event-stream", _sse([
    {"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}],
     "created": 1733312345, "id": "chatcmpl-l1", "model": "gpt-3.5-turbo", "object": "chat.completion.chunk"},
    {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": "The door is closed."}}],
     "created": 1733312345, "id": "chatcmpl-l1", "model": "gpt-3.5-turbo", "object": "chat.completion.chunk"},
    {"choices": [{"finish_reason": "stop", "index": 0, "delta": {}}], "created": 1733312345, "id": "chatcmpl-l1",
     "model": "gpt-3.5-turbo", "object": "chat.completion.chunk",
     "timings": {"prompt_n": 310, "prompt_ms": 2210.5, "predicted_n": 6, "predicted_ms": 160.2}},
    "[DONE]"]))


class Replay:
    """An HTTP server on 127.0.0.1 answering every POST with one recording; keeps the request bodies."""

    def __init__(self, recording: tuple[int, str, bytes]):
        self.recording = recording
        self.requests: list[dict] = []
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        status, ctype, body = self.recording
        return web.Response(status=status, body=body, content_type=ctype)
