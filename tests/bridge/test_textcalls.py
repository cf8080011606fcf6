"""Tool calls a local model wrote as text because its server did not parse them (a chat template llama-server
cannot read the call format from, an Ollama model file without it): read from the text in the formats models
are trained on, for offered tools only, and forwarded to the device like any other call; anything else stays
the model's answer, untouched."""
import json

import pytest

from bridge.config import Tier
from bridge.rounds.textcalls import calls_in_text
from tests.bridge.harness import ask, bridge_ctx, config, manifest, run
from tests.fakes.recorded import Replay

NAMES = {"gpio_write", "gpio_read", "more_tools"}
PORCH = {"pin": "porch_light", "value": 1}


def said(text):
    found = calls_in_text(text, NAMES)
    return None if found is None else (found[0], [(c.name, c.args) for c in found[1]])


@pytest.mark.parametrize("text, want", [
    ('<tool_call>\n{"name": "gpio_write", "arguments": {"pin": "porch_light", "value": 1}}\n</tool_call>',
     ("", [("gpio_write", PORCH)])),
    ('Sure.\n<tool_call>{"name": "gpio_write", "arguments": "{\\"pin\\": \\"porch_light\\", \\"value\\": 1}"}'
     '</tool_call>\n<tool_call>{"name": "gpio_read", "arguments": {"pin": "door"}}</tool_call>',
     ("Sure.", [("gpio_write", PORCH), ("gpio_read", {"pin": "door"})])),
    ('{"name": "gpio_write", "parameters": {"pin": "porch_light", "value": 1}}', ("", [("gpio_write", PORCH)])),
    ('```json\n[{"name": "gpio_read", "arguments": {"pin": "door"}}]\n```', ("", [("gpio_read", {"pin": "door"})])),
    ('[TOOL_CALLS][{"name": "gpio_write", "arguments": {"pin": "porch_light", "value": 1}}]',
     ("", [("gpio_write", PORCH)])),
    ('<tool_call>{"name": "more_tools", "arguments": {"family": "schedule"}}</tool_call>',
     ("", [("more_tools", {"family": "schedule"})])),
], ids=["hermes", "hermes-words-two-calls-string-args", "llama-json", "fenced-list", "mistral", "more-tools"])
def test_calls_written_in_the_formats_models_are_trained_on_are_read(text, want):
    assert said(text) == want


@pytest.mark.parametrize("text", [
    "The porch light is on.",
    '<tool_call>{"name": "unlock_door", "arguments": {}}</tool_call>',  # not offered
    '<tool_call>{"name": "gpio_write", "arguments": {"pin": "porch_light"',  # cut off
    'I would call <tool_call> for that, then {"name": "gpio_write"} maybe </tool_call> <tool_call>',
    '{"name": "gpio_write", "arguments": {"pin": "porch_light", "value": 1}, "note": "an example"}',
    '{"name": "gpio_read"}  is what I would use',
    '{"name": "gpio_write", "arguments": [1, 2]}',
    "[]",
    '[TOOL_CALLS] not json',
], ids=["words", "unknown-tool", "cut-off", "stray-tags", "extra-keys", "json-then-words", "args-not-object",
        "empty-list", "mistral-garbage"])
def test_anything_else_is_the_models_answer_as_it_is(text):
    assert calls_in_text(text, NAMES) is None


def _content_stream(text: str) -> bytes:
    """llama-server's stream when it has no parser for the template: the call as content deltas, as recorded
    from the real server (tools/llama_check.py's scripted model with such a template)."""
    def chunk(delta, finish=None):
        return {"choices": [{"finish_reason": finish, "index": 0, "delta": delta}], "created": 1796629592,
                "id": "chatcmpl-tzZJ4ysGtJrnjsfkJZXAl7BWOtN11d8w", "model": "scripted.gguf",
                "system_fingerprint": "b1-0c1e570", "object": "chat.completion.chunk"}
    pieces = [chunk({"role": "assistant", "content": None})] + [chunk({"content": text[k:k + 3]})
                                                                for k in range(0, len(text), 3)]
    pieces.append(chunk({}, "stop"))
    return b"".join(b"data: " + json.dumps(p, separators=(",", ":")).encode() + b"\n\n" for p in pieces) + \
        b"data: [DONE]\n\n"


def test_a_call_the_server_left_in_the_text_reaches_the_device(tmp_path):
    text = '<tool_call>\n{"name": "gpio_write", "arguments": {"pin": "porch_light", "value": 1}}\n</tool_call>'

    async def go():
        server = Replay((200, "text/event-stream", _content_stream(text)))
        await server.start()
        try:
            async with bridge_ctx(config([Tier("local", server.base_url, "m")], tmp_path)) as ctx:
                ctx.manifests.update("dev1", json.dumps(manifest("dev1")).encode())
                return await ask(ctx, "t1")
        finally:
            await server.close()
    msgs = run(go())
    calls = [c for m in msgs for c in m.get("calls", [])]
    assert [(c["tool"], c["args"]) for c in calls] == [("gpio_write", PORCH)], msgs
    assert msgs[-1]["done"] and msgs[-1].get("text", "") == "" and "err" not in msgs[-1]
