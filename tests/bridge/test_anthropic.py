"""Anthropic messages provider over real HTTP against the fake server's /v1/messages wire format."""
import asyncio
import time

import pytest

from bridge.httpclient import HttpClient
from bridge.providers.anthropic import AnthropicProvider, to_anthropic
from bridge.providers.base import ProviderError
from tests.fakes.openai_server import FakeOpenAI, Reply

MESSAGES = [{"role": "system", "content": "You are wisp."}, {"role": "user", "content": "Turn on the porch light"}]
TOOLS = [{"type": "function", "function": {"name": "set_light", "description": "Switch a light",
                                           "parameters": {"type": "object", "properties": {
                                               "room": {"type": "string"}, "on": {"type": "boolean"}}}}}]


@pytest.fixture
def fake():
    server = FakeOpenAI()
    server.start_in_thread()
    yield server
    server.stop()


def _run(base_url, tools=None, messages=MESSAGES, **kw):
    async def go():
        async with HttpClient() as http:
            p = AnthropicProvider(http, base_url, "claude-fake", **kw)
            return [(time.monotonic(), ev) async for ev in p.stream_chat(messages, tools)]
    return asyncio.run(go())


def _error(base_url, **kw) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        _run(base_url, **kw)
    return info.value


def test_text_stream_usage_and_request_shape(fake):
    fake.responder = lambda req: Reply(text="The porch light is on.")
    events = [ev for _, ev in _run(fake.base_url, api_key="sk-ant-1")]
    assert "".join(e.text for e in events if e.kind == "text") == "The porch light is on."
    assert len([e for e in events if e.kind == "text"]) > 1
    done = events[-1]
    assert done.kind == "done" and done.finish_reason == "stop"
    assert done.usage["prompt_tokens"] > 0 and done.usage["completion_tokens"] > 0  # OpenAI-shaped
    (req,) = fake.requests
    assert fake.paths == ["/v1/messages"]
    # the system prompt is a cache breakpoint: the stable prefix of every round
    assert req["system"] == [{"type": "text", "text": "You are wisp.", "cache_control": {"type": "ephemeral"}}]
    assert req["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Turn on the porch light"}]}]
    assert req["stream"] is True and req["max_tokens"] == 1024 and req["model"] == "claude-fake"


def test_tool_calls_stream_as_each_block_stops(fake):
    calls = [("set_light", {"room": "porch", "on": True}), ("set_light", {"room": "hall", "on": False})]
    fake.responder = lambda req: Reply(text="On it.", calls=calls, chunk_delay_ms=30, arg_piece_len=4)
    timed = _run(fake.base_url, tools=TOOLS)
    got = [(ev.call.name, ev.call.args) for _, ev in timed if ev.kind == "call"]
    assert got == calls
    first_call_at = next(t for t, ev in timed if ev.kind == "call")
    assert fake.ended_streams()[0] - first_call_at > 0.1  # the first call arrived while the second still streamed
    assert timed[-1][1].finish_reason == "tool_calls"
    assert fake.requests[0]["tools"] == [{"name": "set_light", "description": "Switch a light",
                                          "input_schema": TOOLS[0]["function"]["parameters"],
                                          "cache_control": {"type": "ephemeral"}}]


def test_errors_auth_cut_and_malformed(fake):
    fake.api_key = "sk-ant-right"
    err = _error(fake.base_url, api_key="sk-ant-wrong")
    assert (err.kind, err.status) == ("http", 401) and "authentication_error" in err.message
    fake.api_key = None
    fake.responder = lambda req: Reply(status=529)
    err = _error(fake.base_url)
    assert err.status == 529 and "overloaded" in err.message
    fake.responder = lambda req: Reply(text="never finishes properly", cut_after_chunks=4)
    assert _error(fake.base_url).kind == "cut"
    fake.responder = lambda req: Reply(text="broken", malformed=True)
    assert _error(fake.base_url).kind == "malformed"


def test_stall_hits_the_idle_timeout(fake):
    fake.responder = lambda req: Reply(text="stalls", stall_ms=3000)
    t0 = time.monotonic()
    err = _error(fake.base_url, idle_timeout_s=0.3)
    assert err.kind == "timeout" and time.monotonic() - t0 < 1.5


def test_conversation_mapping_with_tool_results():
    msgs = [{"role": "system", "content": "sys"},
            {"role": "user", "content": "porch on and hall off"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "set_light", "arguments": '{"room":"porch"}'}},
                {"id": "c2", "type": "function", "function": {"name": "set_light", "arguments": '{"room":"hall"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "tool", "tool_call_id": "c2", "content": "Error: no hall"}]
    system, out, tools = to_anthropic(msgs, TOOLS)
    assert system == "sys" and tools[0]["name"] == "set_light"
    assert [m["role"] for m in out] == ["user", "assistant", "user"]  # results merged into one user turn
    assert out[1]["content"][0] == {"type": "tool_use", "id": "c1", "name": "set_light", "input": {"room": "porch"}}
    assert out[2]["content"] == [{"type": "tool_result", "tool_use_id": "c1", "content": "ok"},
                                 {"type": "tool_result", "tool_use_id": "c2", "content": "Error: no hall"}]


# ---- what a /v1 caller sends in OpenAI's terms, in the Messages API's ----------------------------------------
# OpenAI's chat API: `developer` messages are the instructions that replace `system` ones for newer models (the
# role the OpenAI SDK's agents send); a user turn's content parts are text and `image_url` (an https URL or a
# data: URL); `parallel_tool_calls: false` asks for at most one call; `user` names the end user. The Messages
# API: instructions go in `system`; images are `image` blocks with a `base64` or `url` source; at most one call
# is `tool_choice.disable_parallel_tool_use`; the end user is `metadata.user_id`.

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _anthropic_request_type():
    from pydantic import TypeAdapter

    from tests.bridge.sdk_bodies import strict
    strict("anthropic.types")
    from anthropic.types.message_create_params import MessageCreateParamsStreaming
    return TypeAdapter(MessageCreateParamsStreaming)


def test_a_developer_message_is_the_system_prompt_anthropic_gets(fake):
    _run(fake.base_url, messages=[{"role": "developer", "content": "Answer in French."},
                                  {"role": "user", "content": "Is the porch light on?"}])
    (req,) = fake.requests
    assert req["system"] == [{"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}]


def test_an_image_reaches_anthropic_as_an_image_block_not_dropped(fake):
    parts = [{"type": "text", "text": "What does this label say?"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}}]
    photo_only = [{"type": "image_url", "image_url": {"url": "https://example.com/meter.jpg"}}]
    _run(fake.base_url, messages=[{"role": "user", "content": parts}, {"role": "assistant", "content": "OK."},
                                  {"role": "user", "content": photo_only}])
    (req,) = fake.requests
    assert req["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "What does this label say?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "OK."}]},
        {"role": "user", "content": [{"type": "image", "source": {"type": "url",
                                                                  "url": "https://example.com/meter.jpg"}}]}]


def test_one_call_at_a_time_and_the_end_user_reach_anthropic_in_its_terms(fake):
    async def go(options):
        async with HttpClient() as http:
            p = AnthropicProvider(http, fake.base_url, "claude-fake")
            return [ev async for ev in p.stream_chat(MESSAGES, TOOLS, options)]
    asyncio.run(go({"parallel_tool_calls": False, "user": "kitchen-7f3a"}))
    asyncio.run(go({"parallel_tool_calls": False, "tool_choice": "required"}))
    asyncio.run(go({"parallel_tool_calls": True}))
    first, second, third = fake.requests
    assert first["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert first["metadata"] == {"user_id": "kitchen-7f3a"}
    assert second["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "tool_choice" not in third  # parallel calls are the Messages API's default
    for req in (first, second, third):
        _anthropic_request_type().validate_python(req)  # the SDK's published request type, unknown keys refused


def test_a_content_part_anthropic_cannot_take_is_a_refusal_not_dropped(fake):
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    err = _error(fake.base_url, messages=[{"role": "user", "content": [{"type": "text", "text": "Who spoke?"},
                                                                        audio]}])
    assert (err.kind, err.status) == ("http", 400) and "input_audio" in err.message and not fake.requests


@pytest.mark.parametrize("stop_reason, finish", [("refusal", "content_filter"),
                                                 ("model_context_window_exceeded", "length")])
def test_an_anthropic_stop_reason_reaches_v1_callers_as_the_finish_reason_openai_names_it(stop_reason, finish):
    # OpenAI's finish_reason is one of stop, length, tool_calls, content_filter, function_call (its SDK's type);
    # a /v1 caller's client may refuse any other value
    from tests.fakes import recorded
    from tests.fakes.recorded import Replay
    status, ctype, body = recorded.ANTHROPIC_REFUSAL

    async def go():
        server = Replay((status, ctype, body.replace(b'"refusal"', f'"{stop_reason}"'.encode())))
        await server.start()
        try:
            return [ev for _, ev in await asyncio.to_thread(_run, server.base_url)]
        finally:
            await server.close()
    events = asyncio.run(go())
    assert events[-1].kind == "done" and events[-1].finish_reason == finish
