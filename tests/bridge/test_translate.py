"""Device conversation -> OpenAI messages, and manifest -> OpenAI tools and system prompt."""
import json

import pytest

from bridge.manifests import ManifestCache, parse_manifest
from bridge.rounds.prompt import system_prompt
from bridge.rounds.toolset import openai_tools
from bridge.rounds.translate import to_openai_messages

MANIFEST = {"v": 1, "id": "dev1", "fw": "0.1.0", "hash": "5d41402a",
            "tools": [{"name": "gpio_write", "desc": "Set a named output pin",
                       "params": {"type": "object",
                                  "properties": {"pin": {"type": "string", "enum": ["porch_light"]},
                                                 "value": {"type": "integer", "enum": [0, 1]}},
                                  "required": ["pin", "value"]}},
                      {"name": "uptime"}],
            "pins": {"porch_light": {"mode": "out"}, "door": {"mode": "in"}},
            "limits": {"rounds": 4, "calls": 4}}


def test_full_round_trip_conversation():
    msgs = [{"r": "user", "t": "turn on the porch light"},
            {"r": "asst", "t": "", "calls": [{"cid": "call_1", "tool": "gpio_write",
                                              "args": {"pin": "porch_light", "value": 1}}]},
            {"r": "tool", "cid": "call_1", "t": "ok: porch_light=1"},
            {"r": "asst", "t": "Done."},
            {"r": "user", "t": "thanks"}]
    out = to_openai_messages(msgs)
    assert out[0] == {"role": "user", "content": "turn on the porch light"}
    assert out[1]["role"] == "assistant" and out[1]["content"] is None
    (tc,) = out[1]["tool_calls"]
    assert tc["id"] == "call_1" and tc["type"] == "function" and tc["function"]["name"] == "gpio_write"
    assert isinstance(tc["function"]["arguments"], str)  # OpenAI wants a JSON string, not an object
    assert json.loads(tc["function"]["arguments"]) == {"pin": "porch_light", "value": 1}
    assert out[2] == {"role": "tool", "tool_call_id": "call_1", "content": "ok: porch_light=1"}
    assert out[3] == {"role": "assistant", "content": "Done."}
    assert out[4] == {"role": "user", "content": "thanks"}


def test_assistant_text_and_calls_and_missing_args():
    out = to_openai_messages([{"r": "user", "t": "x"},
                              {"r": "asst", "t": "checking", "calls": [{"cid": "c", "tool": "uptime"}]}])
    assert out[1]["content"] == "checking"
    assert out[1]["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize("msgs, expected", [
    (None, "msgs must be a non-empty list"),
    ([], "msgs must be a non-empty list"),
    ({"r": "user"}, "msgs must be a non-empty list"),
    (["hi"], "msgs[0] must be an object"),
    ([{"r": "system", "t": "x"}], "msgs[0].r must be 'user', 'asst' or 'tool'"),
    ([{"r": "user"}], "msgs[0].t (the text) is missing"),
    ([{"r": "user", "t": 5}], "msgs[0].t must be a string"),
    ([{"r": "user", "t": "x"}, {"r": "asst", "calls": {}}], "msgs[1].calls must be a list"),
    ([{"r": "user", "t": "x"}, {"r": "asst", "calls": [{"cid": "c", "tool": "t", "args": "[]"}]}],
     "msgs[1].calls[0].args must be an object"),
    ([{"r": "user", "t": "x"}, {"r": "asst", "calls": [{"tool": "t"}]}], "msgs[1].calls[0].cid"),
    ([{"r": "user", "t": "x"}, {"r": "asst", "calls": [{"cid": "c", "tool": ""}]}], "msgs[1].calls[0].tool"),
    ([{"r": "user", "t": "x"}, {"r": "tool", "cid": "c9", "t": "ok"}], "no earlier asst message made"),
    ([{"r": "user", "t": "x"}, {"r": "tool", "t": "ok"}], "msgs[1].cid must be a non-empty string"),
])
def test_bad_shapes_raise_readable_errors(msgs, expected):
    with pytest.raises(ValueError) as e:
        to_openai_messages(msgs)
    assert expected in str(e.value)


def test_openai_tools_from_manifest():
    tools = openai_tools(MANIFEST["tools"])
    assert tools[0] == {"type": "function", "function": {
        "name": "gpio_write", "description": "Set a named output pin", "parameters": MANIFEST["tools"][0]["params"]}}
    # a tool without params still needs a parameters schema for OpenAI
    assert tools[1]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_system_prompt_names_device_and_pins():
    prompt = system_prompt(MANIFEST)
    assert "dev1" in prompt and "porch_light (out)" in prompt and "door (in)" in prompt
    assert "Never invent pins" in prompt
    assert "in the same turn write the short reply" in prompt  # one round for actions (docs/protocol.md)
    assert len(prompt) < 450  # tokens cost latency on every round


def test_manifest_cache_keeps_valid_ignores_junk():
    cache = ManifestCache()
    assert cache.update("dev1", json.dumps(MANIFEST).encode())
    for junk in (b"not json", b"[1,2]", b'{"v":2,"hash":"h","tools":[]}', b'{"v":true,"hash":"h","tools":[]}',
                 b'{"v":1,"tools":[]}',
                 b'{"v":1,"hash":"h","tools":[{"name":"bad name!"}]}',
                 b'{"v":1,"hash":"h","tools":"gpio_write"}',
                 b'{"v":1,"hash":"h","tools":[],"pins":{"a":1}}',
                 json.dumps({**MANIFEST, "id": "dev2"}).encode(),  # another device's manifest on our topic
                 b"\xff\xfe"):
        assert not cache.update("dev1", junk)
    assert cache.get("dev1")["hash"] == "5d41402a"  # junk never replaces a good copy
    assert not cache.update("dev1", b"")  # an empty retained message clears it
    assert cache.get("dev1") is None


def test_manifest_cache_is_bounded_in_devices_and_bytes(monkeypatch):
    from bridge import protocol
    monkeypatch.setattr(protocol, "MAX_DEVICES", 3)
    cache = ManifestCache()
    for n in range(5):                   # a publisher inventing device ids
        cache.update(f"ph{n}", json.dumps({**MANIFEST, "id": f"ph{n}"}).encode())
    assert [cache.get(f"ph{n}") is not None for n in range(5)] == [True, True, True, False, False]
    assert cache.update("ph0", json.dumps({**MANIFEST, "id": "ph0", "hash": "new"}).encode())  # known ones update
    huge = {**MANIFEST, "id": "ph1", "tools": MANIFEST["tools"] * 200}
    assert len(json.dumps(huge)) > 16 * 1024 and not cache.update("ph1", json.dumps(huge).encode())


def test_parse_manifest_fills_missing_id():
    m = parse_manifest("dev7", b'{"v":1,"hash":"h","tools":[]}')
    assert m["id"] == "dev7" and "dev7" in system_prompt(m) and "no pins" in system_prompt(m)
