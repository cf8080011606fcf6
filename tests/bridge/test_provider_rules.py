"""What the bridge offers a model must pass the providers' schema rules, for the manifests real firmware
publishes (built by the firmware on the MicroPython unix port) for several device configs:
- OpenAI function calling rejects an array schema without `items` (HTTP 400 "array schema missing items");
- Gemini's OpenAI-compatible endpoint takes an OpenAPI subset: one `type` string, never a list, and
  no empty `enum`; a tool nobody can call (its pin enum empty) must not be offered at all.
Our fake tiers accept anything, so these rules are checked here, on every tool, for every config."""
import json
import subprocess

import pytest

from bridge.manifests import openai_tools
from tools.paths import micropypath, micropython_cmd

CONFIGS = {
    "default": {"porch_light": {"pin": 5, "mode": "out"}, "fan": {"pin": 18, "mode": "out"},
                "heater": {"pin": 19, "mode": "out"}, "door": {"pin": 4, "mode": "in", "pull": "up"}},
    "inputs only": {"door": {"pin": 4, "mode": "in"}, "window": {"pin": 27, "mode": "in"}},
    "every mode": {"relay": {"pin": 5, "mode": "out"}, "button": {"pin": 4, "mode": "in"},
                   "dimmer": {"pin": 18, "mode": "pwm"}, "battery": {"pin": 34, "mode": "adc"}},
    "no pins": {},
}
_SCRIPT = ("from wisp import app\nfrom wisp.tools import manifest\ndev, _ = app.build('config.json')\n"
           "print('MANIFEST ' + ''.join(manifest.pieces(dev, 'x')))\n")


def firmware_manifest(tmp_path, pins, **config):
    (tmp_path / "config.json").write_text(json.dumps({"id": "conf1", "broker": {"host": "127.0.0.1", "port": 1},
                                                      "pins": pins, **config}))
    done = subprocess.run([micropython_cmd(), "-c", _SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, env={"MICROPYPATH": micropypath()})
    line = next((x for x in done.stdout.splitlines() if x.startswith("MANIFEST ")), None)
    assert line, done.stdout + done.stderr
    return json.loads(line[len("MANIFEST "):])


def schema_problems(schema, where):
    """Every rule of the providers above that `schema` (and its sub-schemas) breaks."""
    problems = []
    if isinstance(schema.get("type"), list):
        problems.append(f"{where}: list-valued type {schema['type']}")
    if schema.get("type") == "array" and "items" not in schema:
        problems.append(f"{where}: array without items")
    if "enum" in schema and not schema["enum"]:
        problems.append(f"{where}: empty enum")
    for name, sub in (schema.get("properties") or {}).items():
        problems += schema_problems(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += schema_problems(schema["items"], f"{where}[]")
    for i, alt in enumerate(schema.get("anyOf") or []):
        problems += schema_problems(alt, f"{where}|{i}")
    return problems


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_offered_tool_passes_the_provider_rules(tmp_path, config):
    manifest = firmware_manifest(tmp_path, CONFIGS[config])
    offered = openai_tools(manifest)
    assert offered, "a device always has tools (system, memory, routines...)"
    problems = []
    for tool in offered:
        fn = tool["function"]
        assert fn["description"], f"{fn['name']} has no description"
        assert fn["parameters"]["type"] == "object"
        problems += schema_problems(fn["parameters"], fn["name"])
    assert problems == []


def test_a_tool_this_device_cannot_use_is_not_offered(tmp_path):
    names = {t["name"] for t in firmware_manifest(tmp_path, CONFIGS["default"])["tools"]}
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
