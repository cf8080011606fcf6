"""Conformance: what the bridge sends each provider family must pass that family's schema rules
(bridge/providers/schemas.py, written down with their sources in docs/bridge.md "Providers"), for the
manifests real firmware publishes (built on the MicroPython unix port) for several device configs, and for
every tool of each (every family loaded). A new tool in the firmware registry is checked here the day it is
added. Our fake tiers accept anything, so the rules are checked here, not by a fake's 400."""
import json

import pytest

from bridge.providers.schemas import FAMILIES, problems, translate
from bridge.rounds.toolset import Toolset, openai_tools
from tests.bridge.harness import firmware_manifest
from tools.sim import DEFAULT_PINS

CONFIGS = {
    "default": DEFAULT_PINS,  # what `wisp sim` gives a new device: an alias and a door
    "inputs only": {"door": {"pin": 4, "mode": "in"}, "window": {"pin": 27, "mode": "in"}},
    "every mode": {"relay": {"pin": 5, "mode": "out"}, "button": {"pin": 4, "mode": "in"},
                   "dimmer": {"pin": 18, "mode": "pwm"}, "battery": {"pin": 34, "mode": "adc"}},
    "no pins": {},
}
# the rest of a device config per case: sensors and an I2C bus bring their own tools
EXTRA = {"every mode": {"sensors": {"room": {"type": "dht22", "pin": 15}}, "i2c": {"scl": 22, "sda": 21}}}
_MANIFESTS: dict = {}
def manifest_of(tmp_path, config):
    if config not in _MANIFESTS:  # one MicroPython run per config for the whole module
        _MANIFESTS[config] = firmware_manifest(tmp_path, CONFIGS[config], **EXTRA.get(config, {}))
    return _MANIFESTS[config]


def every_tool(manifest):
    """What a round offers once the model has asked for every family: the whole manifest plus more_tools."""
    toolset = Toolset(manifest, [])
    for family in toolset.families:
        toolset.load(json.dumps({"family": family}))
    return toolset.tools()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_tool_of_every_config_passes_each_providers_rules(tmp_path, config, family):
    manifest = manifest_of(tmp_path, config)
    offered = every_tool(manifest)
    assert len(offered) == len(manifest["tools"]) + (1 if Toolset(manifest, []).families else 0)
    sent = translate(family, offered)
    found = [p for tool in sent for p in problems(family, tool)]
    assert found == []
    for tool in sent:
        assert tool["function"]["description"], f"{tool['function']['name']} has no description"


def test_the_default_device_is_offered_what_the_firmware_publishes_untouched_for_openai(tmp_path):
    manifest = manifest_of(tmp_path, "default")
    assert [p for t in openai_tools(manifest["tools"]) for p in problems("openai", t)] == []
    memory_set = next(t for t in translate("openai", openai_tools(manifest["tools"]))
                      if t["function"]["name"] == "memory_set")
    assert "anyOf" in memory_set["function"]["parameters"]["properties"]["value"]  # OpenAI reads unions as is


BAD = {"type": "function", "function": {"name": "bad", "description": "d", "parameters": {
    "type": "object", "required": [], "additionalProperties": False,
    "properties": {"steps": {"type": "array"}, "pin": {"type": "string", "enum": []},
                   "level": {"type": "integer", "enum": [0, 1]}, "v": {"type": ["string", "null"]},
                   "x": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                   "n": {"type": "integer", "minimum": 1, "maximum": 9, "multipleOf": 1},
                   "word": {"type": "string", "pattern": "\\S"}, "any": {"description": "any value"}}}}}


@pytest.mark.parametrize("family", FAMILIES)
def test_translation_repairs_what_a_family_would_refuse(family):
    assert problems(family, BAD)  # each family refuses something in it
    fixed = translate(family, [BAD])[0]
    assert problems(family, fixed) == []
    props = fixed["function"]["parameters"]["properties"]
    assert set(props) == {"steps", "pin", "level", "v", "x", "n", "word", "any"}  # no argument lost
    assert BAD["function"]["parameters"]["required"] == []  # the caller's object is not changed


def test_gemini_and_ollama_keep_the_meaning_in_words():
    gemini = translate("gemini", [BAD])[0]["function"]["parameters"]["properties"]
    assert gemini["level"] == {"type": "integer", "minimum": 0, "maximum": 1, "description": "one of 0, 1"}
    assert gemini["v"] == {"type": "string", "nullable": True}
    assert gemini["x"] == {"type": "string", "description": "text or a number"}
    ollama = translate("ollama", [BAD])[0]["function"]["parameters"]["properties"]
    assert ollama["n"] == {"type": "integer", "description": "minimum 1; maximum 9"}


def test_a_const_reaches_gemini_and_ollama_as_a_one_value_enum():
    # both drop `const` without a word; a caller's {"const": "on"} would leave the model any value
    tool = {"type": "function", "function": {"name": "mode_set", "description": "set the mode", "parameters": {
        "type": "object", "required": ["mode", "level"],
        "properties": {"mode": {"type": "string", "const": "auto"}, "level": {"const": 3}}}}}
    gemini = translate("gemini", [tool])[0]["function"]["parameters"]["properties"]
    assert gemini["mode"] == {"type": "string", "enum": ["auto"]}
    assert gemini["level"] == {"type": "integer", "minimum": 3, "maximum": 3, "description": "one of 3"}
    ollama = translate("ollama", [tool])[0]["function"]["parameters"]["properties"]
    assert ollama == {"mode": {"type": "string", "enum": ["auto"]}, "level": {"enum": [3]}}


def test_llamacpp_gets_patterns_in_words_and_any_value_as_every_type():
    # json-schema-to-grammar.cpp: an unanchored pattern fails the whole request ("Pattern must start with '^'
    # and end with '$'"), and an empty schema compiles to an object; an array without items takes any values
    props = translate("llamacpp", [BAD])[0]["function"]["parameters"]["properties"]
    assert props["word"] == {"type": "string", "description": "matching the regular expression \\S"}
    assert props["any"] == {"description": "any value", "type": ["string", "number", "boolean", "object", "array",
                                                                  "null"]}
    assert props["steps"] == {"type": "array"}
    assert translate("openai", [BAD])[0]["function"]["parameters"]["properties"]["steps"] == {"type": "array",
                                                                                             "items": {}}


def test_a_tool_this_device_cannot_use_is_not_offered(tmp_path):
    names = {t["name"] for t in manifest_of(tmp_path, "default")["tools"]}
    assert "pwm_set" not in names and "adc_read" not in names      # no PWM or analog pin on it
    assert {"gpio_write", "gpio_read", "routine_define", "memory_set"} <= names
    every = {t["name"] for t in firmware_manifest(tmp_path, CONFIGS["every mode"])["tools"]}
    assert {"pwm_set", "adc_read"} <= every
    none = {t["name"] for t in firmware_manifest(tmp_path, CONFIGS["no pins"])["tools"]}
    assert not {"gpio_write", "gpio_read", "gpio_toggle", "gpio_pulse"} & none
    i2c = {"i2c_scan", "i2c_read", "i2c_write", "i2c_write_read"}
    assert not i2c & names                                           # no bus configured: not offered
    bus = {t["name"] for t in firmware_manifest(tmp_path, CONFIGS["default"], i2c={"scl": 22, "sda": 21})["tools"]}
    assert i2c <= bus


def test_a_gemini_tier_gets_free_form_objects_as_json_text_and_the_device_gets_objects(tmp_path):
    from bridge.config import Tier
    from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, manifest, run
    from tests.fakes.openai_server import Reply

    routine = next(t for t in manifest_of(tmp_path, "default")["tools"] if t["name"] == "routine_define")
    step = {"tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}}
    script = iter([Reply(calls=[("routine_define", {"name": "dusk", "steps": [json.dumps(step)]})],
                         text="Saved.")])
    with fake_tiers(lambda req: next(script)) as (a,):
        cfg = config([Tier("g", a.base_url, "gemini-2.5-flash", dialect="gemini")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                m = manifest("dev1")
                ctx.manifests.update("dev1", json.dumps({**m, "tools": m["tools"] + [routine]}).encode())
                history = [{"r": "user", "t": "make a dusk routine"},
                           {"r": "asst", "t": "", "calls": [{"cid": "c0", "tool": "routine_list", "args": {}}]},
                           {"r": "tool", "cid": "c0", "t": "no routines"}]
                return await ask(ctx, "g1", round=1, msgs=history)
        msgs = run(go())
    sent = next(t for t in a.requests[0]["tools"] if t["function"]["name"] == "routine_define")
    assert sent["function"]["parameters"]["properties"]["steps"]["items"]["type"] == "string"
    assert [p for t in a.requests[0]["tools"] for p in problems("gemini", t)] == []
    (call,) = [c for m in msgs for c in m.get("calls", [])]
    assert call["args"] == {"name": "dusk", "steps": [step]}  # decoded back for the device


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["día", "temp²", "ｍｅｍｏｒｙ", "é_read"])
def test_a_name_outside_ascii_breaks_every_familys_name_rule(family, name):
    # OpenAI ("a-z, A-Z, 0-9, ... maximum length of 64"), Anthropic (^[a-zA-Z0-9_-]{1,64}$) and Gemini take
    # ASCII only; str.isalnum() passed these. A firmware tool so named must fail here, not with a provider's 400
    tool = {"type": "function", "function": {"name": name, "description": "d",
                                             "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
    assert any("name must be" in p for p in problems(family, tool))


def test_a_cerebras_tier_gets_array_lengths_in_words(tmp_path):
    # Cerebras answered tool requests carrying minItems with 400 "Unsupported JSON schema fields" (its docs
    # list limits for strict mode only); the I2C tools bound their byte lists with maxItems
    from bridge.config import _ENV_TIERS
    from bridge.providers.schemas import family_for
    _key, _url_var, url, *_ = _ENV_TIERS["premium"]
    assert family_for("openai", url) == "cerebras"  # the default premium tier, without a dialect key
    offered = every_tool(manifest_of(tmp_path, "every mode"))
    i2c_write = {t["function"]["name"]: t for t in offered}["i2c_write"]["function"]["parameters"]
    assert i2c_write["properties"]["data"]["maxItems"] == 32
    assert [p for t in offered for p in problems("cerebras", t)] != []  # what the firmware wrote breaks the rule
    sent = {t["function"]["name"]: t for t in translate("cerebras", offered)}
    data = sent["i2c_write"]["function"]["parameters"]["properties"]["data"]
    assert "maxItems" not in data and data["description"].endswith("at most 32 items")
    openai = {t["function"]["name"]: t for t in translate("openai", offered)}
    assert openai["i2c_write"]["function"]["parameters"]["properties"]["data"]["maxItems"] == 32


def test_an_ollama_tier_gets_array_lengths_and_bounds_in_words(tmp_path):
    # Ollama's tool struct (api/types.go ToolProperty) has no keyword for bounds and drops them: the model
    # reads them in the description; the I2C tools bound their byte lists with maxItems
    sent = {t["function"]["name"]: t for t in translate("ollama", every_tool(manifest_of(tmp_path, "every mode")))}
    data = sent["i2c_write"]["function"]["parameters"]["properties"]["data"]
    assert data == {"type": "array", "description": "at most 32 items",
                    "items": {"type": "integer", "description": "minimum 0; maximum 255"}}
