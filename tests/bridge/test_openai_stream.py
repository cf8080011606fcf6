"""Streamed OpenAI chat-completions client: SSE decoding, tool-call assembly, and the provider over real HTTP."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from bridge.httpclient import HttpClient
from bridge.providers.openai_compat import (
    OpenAICompatProvider,
    ProviderError,
    SSEDecoder,
    StreamEvent,
    ToolCallAssembler,
)
from tests.fakes.openai_server import FakeOpenAI, Reply

MESSAGES = [{"role": "system", "content": "You are wisp."}, {"role": "user", "content": "Turn on the porch light"}]
TOOLS = [{"type": "function", "function": {"name": "set_light", "description": "Switch a light",
                                           "parameters": {"type": "object", "properties": {
                                               "room": {"type": "string"}, "on": {"type": "boolean"}}}}}]


# ---- SSEDecoder ----------------------------------------------------------------------------------------------

SSE_STREAM = (
    ": keep-alive comment\n\n"
    "event: message\r\nid: 7\r\nretry: 1000\r\ndata: {\"t\": \"héllo 🙂 中\"}\r\n\r\n"
    "data: line one\ndata:line two\ndata: \n\n"
    ": comment between fields\ndata: [DONE]\n\n"
).encode()
SSE_EXPECTED = ['{"t": "héllo 🙂 中"}', "line one\nline two\n", "[DONE]"]


def test_sse_decoder_whole_stream():
    assert SSEDecoder().feed(SSE_STREAM) == SSE_EXPECTED


def test_sse_decoder_split_at_every_byte_pair():
    # two split points anywhere, including inside CRLF pairs and inside multi-byte UTF-8 characters
    n = len(SSE_STREAM)
    for i in range(n + 1):
        for j in range(i, n + 1):
            dec = SSEDecoder()
            got = dec.feed(SSE_STREAM[:i]) + dec.feed(SSE_STREAM[i:j]) + dec.feed(SSE_STREAM[j:])
            assert got == SSE_EXPECTED, (i, j)


def test_sse_decoder_byte_by_byte():
    dec = SSEDecoder()
    got = [p for k in range(len(SSE_STREAM)) for p in dec.feed(SSE_STREAM[k:k + 1])]
    assert got == SSE_EXPECTED


def test_sse_decoder_event_waits_for_blank_line_and_flush():
    dec = SSEDecoder()
    assert dec.feed(b"data: a\n") == []  # not dispatched until the blank line
    assert dec.feed(b"\n") == ["a"]
    assert dec.feed(b"event: x\nid: 1\n\n") == []  # events without data dispatch nothing
    assert dec.feed(b"data: [DONE]") == []
    assert dec.flush() == ["[DONE]"]  # lenient at EOF: unterminated last event still delivered
    assert dec.flush() == []


def test_sse_decoder_field_without_space_or_colon():
    assert SSEDecoder().feed(b"data:x\ndata\ndata:  two spaces\n\n") == ["x\n\n two spaces"]


# ---- ToolCallAssembler ---------------------------------------------------------------------------------------

def _fragments(calls, piece=3, same_index=False):
    """OpenAI-shaped delta.tool_calls fragments: header with id+name, then argument pieces."""
    out = []
    for i, (cid, name, raw) in enumerate(calls):
        idx = 0 if same_index else i
        out.append([{"index": idx, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}])
        out += [[{"index": idx, "function": {"arguments": raw[k:k + piece]}}] for k in range(0, len(raw), piece)]
    return out


def _feed_all(asm, frags):
    """Returns [(fragment number at which a call came out, call)], then finish() results at len(frags)."""
    got = [(n, c) for n, f in enumerate(frags) for c in asm.feed(f)]
    return got + [(len(frags), c) for c in asm.finish()]


CALLS = [("call_a", "set_light", '{"room": "porch", "on": true}'),
         ("call_b", "say", '{"text": "done ✓"}'),
         ("call_c", "beep", "{}")]


def test_assembler_emits_each_call_when_next_index_starts():
    frags = _fragments(CALLS, piece=1)
    got = _feed_all(ToolCallAssembler(), frags)
    assert [c.cid for _, c in got] == ["call_a", "call_b", "call_c"]
    assert [c.name for _, c in got] == ["set_light", "say", "beep"]
    assert [c.args for _, c in got] == [{"room": "porch", "on": True}, {"text": "done ✓"}, {}]
    assert all(c.error is None for _, c in got)
    assert got[0][1].raw_args == CALLS[0][2]
    # call_a is released by the very fragment that opens index 1, not later
    start_b = 1 + len(CALLS[0][2])
    start_c = start_b + 1 + len(CALLS[1][2])
    assert [n for n, _ in got] == [start_b, start_c, len(frags)]


def test_assembler_several_calls_in_one_delta():
    asm = ToolCallAssembler()
    done = asm.feed([{"index": 0, "id": "x", "function": {"name": "a", "arguments": "{}"}},
                     {"index": 1, "id": "y", "function": {"name": "b", "arguments": '{"k": 1}'}}])
    assert [c.cid for c in done] == ["x"]
    assert [(c.cid, c.args) for c in asm.finish()] == [("y", {"k": 1})]
    assert asm.finish() == []


def test_assembler_ollama_index_zero_quirk():
    frags = _fragments(CALLS, piece=4, same_index=True)
    got = _feed_all(ToolCallAssembler(), frags)
    assert [(c.cid, c.name) for _, c in got] == [("call_a", "set_light"), ("call_b", "say"), ("call_c", "beep")]
    assert got[0][1].args == {"room": "porch", "on": True}


def test_assembler_missing_index_and_id():
    asm = ToolCallAssembler()
    assert asm.feed([{"function": {"name": "ping", "arguments": '{"n":'}}]) == []
    assert asm.feed([{"function": {"arguments": " 1}"}}]) == []  # no index -> 0, same call
    (first,) = asm.feed([{"index": 1, "function": {"name": "pong", "arguments": ""}}])
    (second,) = asm.finish()
    assert (first.cid, first.name, first.args) == ("call_0", "ping", {"n": 1})
    assert (second.cid, second.name, second.args, second.error) == ("call_1", "pong", {}, None)


def test_assembler_invalid_arguments():
    calls = _feed_all(ToolCallAssembler(), [
        [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a": 1'}}],
        [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": "[1, 2]"}}],
        [{"index": 2, "id": "c3", "function": {"arguments": "{}"}}]])
    bad_json, not_object, no_name = (c for _, c in calls)
    assert bad_json.args is None and bad_json.raw_args == '{"a": 1'
    assert bad_json.error.startswith("arguments are not valid JSON")
    assert not_object.args is None and "not a JSON object" in not_object.error
    assert no_name.args == {} and no_name.error and "name" in no_name.error


# ---- provider against the fake server (real HTTP on 127.0.0.1) ----------------------------------------------

@pytest.fixture
def fake():
    server = FakeOpenAI()
    server.start_in_thread()
    yield server
    server.stop()


def _run(base_url, tools=None, **kw) -> list[tuple[float, StreamEvent]]:
    """Drive stream_chat to the end; returns (arrival time.monotonic(), event) pairs."""
    async def go():
        async with HttpClient() as http:
            provider = OpenAICompatProvider(http, base_url, "fake-model", **kw)
            return [(time.monotonic(), ev) async for ev in provider.stream_chat(MESSAGES, tools)]
    return asyncio.run(go())


def _events(base_url, tools=None, **kw) -> list[StreamEvent]:
    return [ev for _, ev in _run(base_url, tools, **kw)]


def _error(base_url, **kw) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        _run(base_url, **kw)
    return info.value


def test_text_only_stream_and_request_shape(fake):
    fake.responder = lambda req: Reply(text="The porch light is on. Anything else?")
    events = _events(fake.base_url, extra_body={"temperature": 0.2, "max_tokens": 64})
    assert "".join(e.text for e in events if e.kind == "text") == "The porch light is on. Anything else?"
    assert len([e for e in events if e.kind == "text"]) > 1  # really streamed in deltas
    assert [e.kind for e in events].count("done") == 1 and events[-1].kind == "done"
    assert not [e for e in events if e.kind == "call"]
    assert events[-1].finish_reason == "stop"
    usage = events[-1].usage
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    (req,) = fake.requests
    assert req["model"] == "fake-model" and req["messages"] == MESSAGES
    assert req["stream"] is True and req["stream_options"] == {"include_usage": True}
    assert "tools" not in req and req["temperature"] == 0.2 and req["max_tokens"] == 64


def test_tool_calls_are_yielded_before_stream_ends(fake):
    calls = [("set_light", {"room": "porch", "on": True}), ("say", {"text": "Porch light on ✓"})]
    fake.responder = lambda req: Reply(text="", calls=calls, chunk_delay_ms=40, arg_piece_len=5)
    timed = _run(fake.base_url, tools=TOOLS)
    kinds = [ev.kind for _, ev in timed]
    assert kinds == ["call", "call", "done"]
    (t_first, first), (_, second), (_, done) = timed
    assert (first.call.name, first.call.args) == calls[0] and first.call.error is None
    assert (second.call.name, second.call.args) == calls[1]
    assert first.call.cid.startswith("call_") and first.call.cid != second.call.cid
    assert done.finish_reason == "tool_calls" and done.usage["completion_tokens"] > 0
    # the first call reached us while the server still had the whole second call (~6 chunks x 40 ms) to send
    (t_end,) = fake.ended_streams()
    assert t_end - t_first > 0.15
    assert fake.requests[0]["tools"] == TOOLS


def test_text_then_tool_call(fake):
    fake.responder = lambda req: Reply(text="On it.", calls=[("set_light", {"room": "porch", "on": True})])
    events = _events(fake.base_url, tools=TOOLS)
    assert [e.kind for e in events] == ["text", "text", "call", "done"]
    assert events[0].text + events[1].text == "On it." and events[2].call.args == {"room": "porch", "on": True}


def test_ollama_style_calls_all_at_index_zero(fake):
    calls = [("set_light", {"room": "porch", "on": True}), ("set_light", {"room": "hall", "on": False})]
    fake.responder = lambda req: Reply(calls=calls, ollama_style=True, arg_piece_len=3)
    events = _events(fake.base_url, tools=TOOLS)
    assert [(e.call.name, e.call.args) for e in events if e.kind == "call"] == calls


def test_api_key_sent_and_401_reported_without_key(fake):
    fake.api_key = "sk-right-123"
    assert _events(fake.base_url, api_key="sk-right-123")[-1].kind == "done"
    err = _error(fake.base_url, api_key="sk-wrong-456")
    assert (err.kind, err.status) == ("http", 401)
    assert "Incorrect API key" in err.message and "sk-wrong-456" not in str(err)


def test_http_500_carries_status_and_server_message(fake):
    fake.responder = lambda req: Reply(status=500)
    err = _error(fake.base_url)
    assert (err.kind, err.status) == ("http", 500)
    assert "500" in err.message and "The server had an error" in err.message


def test_malformed_data_line(fake):
    fake.responder = lambda req: Reply(text="hello there", malformed=True)
    assert _error(fake.base_url).kind == "malformed"


def test_connection_cut_mid_stream(fake):
    fake.responder = lambda req: Reply(text="a long answer that never ends", cut_after_chunks=2)
    err = _error(fake.base_url)
    assert err.kind == "cut"


def test_cut_after_finish_reason_is_still_a_complete_answer(fake):
    # chunks: role, "hi", finish(stop) | lost: usage trailer, [DONE]
    fake.responder = lambda req: Reply(text="hi", cut_after_chunks=3)
    events = _events(fake.base_url)
    assert [e.kind for e in events] == ["text", "done"]
    assert events[-1].finish_reason == "stop" and events[-1].usage is None


def test_first_token_timeout(fake):
    fake.responder = lambda req: Reply(text="late", ttft_ms=3000)
    t0 = time.monotonic()
    err = _error(fake.base_url, first_token_timeout_s=0.3, idle_timeout_s=5)
    assert err.kind == "timeout" and "first token" in err.message
    assert time.monotonic() - t0 < 1.5


def test_idle_timeout_after_first_chunk(fake):
    fake.responder = lambda req: Reply(text="stalls after the role chunk", stall_ms=3000)
    t0 = time.monotonic()
    err = _error(fake.base_url, first_token_timeout_s=5, idle_timeout_s=0.3)
    assert err.kind == "timeout" and "idle" in err.message
    assert time.monotonic() - t0 < 1.5


def test_connection_refused():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _error(f"http://127.0.0.1:{port}/v1", connect_timeout_s=1)
    assert err.kind == "connect"


# ---- in-band errors and odd servers (tiny inline server) -----------------------------------------------------

async def _serve(body: bytes, content_type: str):
    async def handler(request):
        return web.Response(body=body, content_type=content_type)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def _against(body: bytes, content_type: str = "text/event-stream", api_key: str | None = None):
    async def go():
        runner, url = await _serve(body, content_type)
        try:
            async with HttpClient() as http:
                provider = OpenAICompatProvider(http, url, "m", api_key=api_key, first_token_timeout_s=1)
                return [ev async for ev in provider.stream_chat(MESSAGES)]
        finally:
            await runner.cleanup()
    return asyncio.run(go())


def test_error_object_inside_stream_is_http_and_redacts_key():
    body = b'data: {"error": {"message": "Overloaded for key sk-secret-9", "type": "server_error"}}\n\n'
    with pytest.raises(ProviderError) as info:
        _against(body, api_key="sk-secret-9")
    assert info.value.kind == "http" and "Overloaded" in info.value.message
    assert "sk-secret-9" not in str(info.value)


def test_stream_without_done_or_finish_reason_is_cut():
    chunk = {"choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
    with pytest.raises(ProviderError) as info:
        _against(f"data: {json.dumps(chunk)}\n\n".encode())
    assert info.value.kind == "cut"


def test_chunk_without_choices_is_malformed_but_usage_only_is_fine():
    usage_only = b'data: {"usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n\n'
    finish = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
    events = _against(finish + usage_only + b"data: [DONE]\n\n")
    assert events[-1].usage == {"prompt_tokens": 3, "completion_tokens": 1}
    with pytest.raises(ProviderError) as info:
        _against(b'data: {"id": "x", "object": "chat.completion.chunk"}\n\n')
    assert info.value.kind == "malformed"


def test_fake_serves_non_streamed_completion_and_models():
    async def go():
        server = FakeOpenAI(lambda req: Reply(text="", calls=[("beep", {"n": 2})]))
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{url}/chat/completions", json={"model": "m", "messages": MESSAGES}) as r:
                    completion = await r.json()
                async with session.get(f"{url}/models") as r:
                    models = await r.json()
        finally:
            await server.close()
        return completion, models
    completion, models = asyncio.run(go())
    choice = completion["choices"][0]
    assert completion["object"] == "chat.completion" and choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "beep" and json.loads(call["function"]["arguments"]) == {"n": 2}
    assert models["data"][0]["id"] == "fake-model"


def test_reasoning_deltas_are_skipped_not_shown():
    # gpt-oss-120b on Cerebras streams its thinking in delta.reasoning (inference-docs.cerebras.ai, "Reasoning":
    # "reasoning tokens are delivered in the reasoning field of the delta"); vLLM and llama-server name the
    # field reasoning_content. Neither is part of the answer.
    def chunk(delta, finish=None):
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "set_light", "arguments": '{"room": "porch", "on": true}'}}
    chunks = [chunk({"role": "assistant", "content": None, "reasoning": "The user wants "}),
              chunk({"reasoning": "the porch light on."}),
              chunk({"reasoning_content": "Call set_light.", "content": ""}),
              chunk({"content": "On it."}),
              chunk({"tool_calls": [call]}),
              chunk({}, "tool_calls"),
              {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 30}}]
    body = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
    events = _against(body)
    assert [e.kind for e in events] == ["text", "call", "done"]
    assert events[0].text == "On it." and events[1].call.args == {"room": "porch", "on": True}
    assert events[-1].usage["completion_tokens"] == 30  # the thinking is billed: usage counts it
