"""What the bridge sends each cloud provider, checked against that provider's own published request types: the
official `openai` and `anthropic` SDKs' TypedDicts for a streamed chat completion and a streamed message, with
unknown keys refused at every level. Our fake tiers accept any body; these types are what the APIs document
(field names, roles, content block shapes, tool definitions), so a renamed or misplaced field fails here.

The bodies are the ones the bridge really sent the fake tiers for whole device rounds: the tools of a firmware
manifest (every family loaded), the model's tool calls and the device's results in the next round, a repair turn
after an invalid call, and text-only answers. And the other way: the stand-in's streams parsed by the SDKs."""
import importlib
import json
import pkgutil
from collections.abc import Iterator

import pytest
from pydantic import TypeAdapter
from typing_extensions import is_typeddict

from bridge.config import Tier
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, firmware_manifest, run
from tests.bridge.test_provider_rules import CONFIGS, EXTRA
from tests.fakes.openai_server import Reply


def _strict(package: str) -> None:
    """Every TypedDict of the SDK's request types refuses keys it does not declare (pydantic ignores them
    by default), and may hold the file types of upload params (never in our bodies)."""
    base = importlib.import_module(package)
    for info in pkgutil.walk_packages(base.__path__, package + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and is_typeddict(value):
                value.__pydantic_config__ = {"extra": "forbid", "arbitrary_types_allowed": True}


def _materialised(value):
    """pydantic validates an Iterable[...] field lazily, as it is iterated: iterate every one."""
    if isinstance(value, dict):
        return {k: _materialised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, Iterator)) or type(value).__name__ == "ValidatorIterator":
        return [_materialised(v) for v in value]
    return value


@pytest.fixture(scope="module")
def request_types():
    _strict("openai.types.chat")
    _strict("anthropic.types")
    from anthropic.types.message_create_params import MessageCreateParamsStreaming
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming
    return {"openai": TypeAdapter(CompletionCreateParamsStreaming),
            "anthropic": TypeAdapter(MessageCreateParamsStreaming)}


def _rounds(tmp_path, provider: str) -> list[dict]:
    """The bodies the bridge sent for: a round whose model calls a tool (one of them invalid, so a repair turn
    follows), the device's next round carrying the results, and a text-only round."""
    manifest = firmware_manifest(tmp_path, CONFIGS["every mode"], **EXTRA["every mode"])
    script = iter([Reply(text="On it.", calls=[("gpio_write", {"pin": "relay", "value": 1}),
                                               ("gpio_write", {"pin": "garage", "value": 1})]),
                   Reply(calls=[("more_tools", {"family": "schedule"})]),
                   Reply(text="Only the relay exists; it is on."),
                   Reply(text="The relay is on."),
                   Reply(text="Hello.")])
    with fake_tiers(lambda req: next(script)) as (fake,):
        tier = Tier("premium", fake.base_url, "model-x", "key-1", provider=provider)
        cfg = config([tier], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                ctx.manifests.update(manifest["id"], json.dumps(manifest).encode())
                await ask(ctx, "a1", manifest["id"], hash=manifest["hash"])
                await ask(ctx, "a2", manifest["id"], hash=manifest["hash"], round=1, msgs=[
                    {"r": "user", "t": "switch the relay on"},
                    {"r": "asst", "t": "On it.", "calls": [{"cid": "c1", "tool": "gpio_write",
                                                          "args": {"pin": "relay", "value": 1}}]},
                    {"r": "tool", "cid": "c1", "t": "ok: relay=1"}])
                await ask(ctx, "a3", manifest["id"], hash=manifest["hash"], msgs=[
                    {"r": "user", "t": "hello"}, {"r": "asst", "t": "Hi."}, {"r": "user", "t": "hello again"}])
        run(go())
    assert len(fake.requests) == 5, fake.requests
    assert len(fake.requests[2]["tools"]) > len(fake.requests[0]["tools"]) > 8  # the schedule family loaded
    return fake.requests


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_body_the_bridge_sends_is_a_valid_request_of_the_providers_sdk(tmp_path, request_types, provider):
    bodies = _rounds(tmp_path, provider)
    assert any(m.get("tool_calls") or isinstance(m.get("content"), list) for m in bodies[1]["messages"])
    for body in bodies:
        _materialised(request_types[provider].validate_python(body))  # raises naming the field and the rule


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
        _materialised(request_types[provider].validate_python(body))


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
