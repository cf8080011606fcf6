"""What the bridge sends each cloud provider, checked against that provider's own published request types: the
official `openai` and `anthropic` SDKs' TypedDicts for a streamed chat completion and a streamed message, with
unknown keys refused at every level. Our fake tiers accept any body; these types are what the APIs document
(field names, roles, content block shapes, tool definitions), so a renamed or misplaced field fails here.

The bodies are the ones the bridge really sent the fake tiers for whole device rounds: the tools of a firmware
manifest (every family loaded), the model's tool calls and the device's results in the next round, a repair turn
after an invalid call, and text-only answers. And the other way: the stand-in's streams parsed by the SDKs."""
import json

import pytest
from pydantic import TypeAdapter

from tests.bridge.harness import fake_tiers
from tests.bridge.sdk_bodies import device_rounds, materialised, openai_request, strict
from tests.fakes.openai_server import Reply


@pytest.fixture(scope="module")
def request_types():
    strict("anthropic.types")
    from anthropic.types.message_create_params import MessageCreateParamsStreaming
    return {"openai": openai_request(), "anthropic": TypeAdapter(MessageCreateParamsStreaming)}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_body_the_bridge_sends_is_a_valid_request_of_the_providers_sdk(tmp_path, request_types, provider):
    bodies = device_rounds(tmp_path, provider)
    assert any(m.get("tool_calls") or isinstance(m.get("content"), list) for m in bodies[1]["messages"])
    for body in bodies:
        materialised(request_types[provider].validate_python(body))  # raises naming the field and the rule


@pytest.mark.parametrize("provider, bad", [
    ("openai", {"messages": [{"role": "user", "content": "hi", "name_": "x"}]}),
    ("openai", {"tools": [{"type": "function", "function": {"name": "a", "parameters": {}, "strict_": True}}]}),
    ("anthropic", {"tools": [{"name": "a", "input_schema": {"type": "object"}, "descriptio": "x"}]}),
    ("anthropic", {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use": "t1"}]}]}),
])
def test_the_check_refuses_a_misspelt_field_at_any_depth(request_types, provider, bad):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            **({"max_tokens": 5} if provider == "anthropic" else {}), **bad}
    with pytest.raises(Exception, match="validation error"):
        materialised(request_types[provider].validate_python(body))


def test_the_stand_in_tiers_streams_are_what_the_sdks_read():
    # the other way round: our fake's streamed answers (text, two tool calls in pieces, usage) parsed and
    # accumulated by the official clients, which check each event's shape as the real APIs send it
    import anthropic
    import openai
    calls = [("gpio_write", {"pin": "relay", "value": 1}), ("gpio_read", {"pin": "door"})]
    with fake_tiers(lambda req: Reply(text="On it.", calls=calls, arg_piece_len=4)) as (fake,):
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}],
                                            stream_options={"include_usage": True}) as stream:
            done = stream.get_final_completion()
        msg = done.choices[0].message
        assert done.choices[0].finish_reason == "tool_calls" and msg.content == "On it." and done.usage.total_tokens
        assert [(c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls] == calls
        client = anthropic.Anthropic(base_url=fake.base_url.removesuffix("/v1"), api_key="k", max_retries=0)
        with client.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
            final = s.get_final_message()
        assert final.stop_reason == "tool_use" and final.content[0].text == "On it." and final.usage.output_tokens
        assert [(b.name, b.input) for b in final.content[1:]] == calls
