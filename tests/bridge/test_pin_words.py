"""What the model learns about a device's pins: the other names people call them by ("the porch lamp" is
porch_light) and what an input's level means (a door reads 1 when open), from the manifest the real firmware
publishes, in the request the bridge sends, while every tool's pin enum still holds only the real names and the
default device's first round stays within its byte budget."""
import json

import pytest

from bridge.config import Tier
from bridge.manifests import parse_manifest
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, run
from tests.bridge.test_provider_rules import firmware_manifest, manifest_of
from tests.fakes.openai_server import Reply

FIRST_ROUND_BYTES = 3000  # the default device's first round (bench/request_size.py FIRST_ROUND_GOAL)


PORCH_ON = Reply(text="Porch light on.", calls=[("gpio_write", {"pin": "porch_light", "value": 1})])


def first_request(tmp_path, manifest, text, reply=PORCH_ON):
    with fake_tiers(lambda req: reply) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg, device_id=manifest["id"]) as ctx:
                ctx.manifests.update(manifest["id"], json.dumps(manifest).encode())
                return await ask(ctx, "w1", device_id=manifest["id"], msgs=[{"r": "user", "t": text}])
        msgs = run(go())
    assert msgs[-1]["done"] and "err" not in msgs[-1], msgs
    return a.requests[0]


def pin_enums(request):
    """Every enum a tool offers for a pin argument."""
    return [set(props["pin"]["enum"]) for t in request["tools"]
            for props in [t["function"]["parameters"].get("properties", {})] if "enum" in props.get("pin", {})]


def test_the_default_device_tells_the_model_its_aliases_and_what_the_door_reads(tmp_path):
    manifest = manifest_of(tmp_path, "default")
    assert manifest["pins"]["porch_light"] == {"mode": "out", "aliases": ["porch lamp"]}
    assert manifest["pins"]["door"] == {"mode": "in", "device_class": "door"}
    assert manifest["pins"]["fan"] == {"mode": "out"}  # nothing more where the config says nothing
    request = first_request(tmp_path, manifest, "turn on the porch lamp at sunset")
    system = request["messages"][0]["content"]
    assert 'porch_light (out, aka "porch lamp")' in system
    assert "door (in, door: 1=open 0=closed)" in system
    assert "fan (out)," in system
    enums = pin_enums(request)
    assert enums and all(e <= {"porch_light", "fan", "heater", "door"} for e in enums), enums  # no alias as a pin
    wire = len(json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode())
    assert wire <= FIRST_ROUND_BYTES, wire


def test_several_aliases_and_other_classes_each_say_their_own_words(tmp_path):
    pins = {"kitchen_light": {"pin": 5, "mode": "out", "aliases": ["ceiling light", "big light"]},
            "leak": {"pin": 4, "mode": "in", "device_class": "moisture", "aliases": ["sink sensor"]},
            "hall": {"pin": 27, "mode": "in", "device_class": "motion"}}
    manifest = firmware_manifest(tmp_path, pins)
    system = first_request(tmp_path, manifest, "is the sink sensor wet?", Reply(text="No."))["messages"][0]["content"]
    assert 'kitchen_light (out, aka "ceiling light"/"big light")' in system
    assert 'leak (in, aka "sink sensor", moisture: 1=wet 0=dry)' in system
    assert "hall (in, motion: 1=detected 0=clear)" in system


@pytest.mark.parametrize("pin, problem", [
    ({"mode": "out", "aliases": "porch lamp"}, "aliases must be a list of names"),
    ({"mode": "out", "aliases": ["ok", 3]}, "aliases must be a list of names"),
    ({"mode": "in", "device_class": ["door"]}, "device_class must be a string"),
])
def test_a_manifest_with_malformed_pin_words_is_refused_with_the_reason(pin, problem):
    payload = json.dumps({"v": 1, "id": "d1", "hash": "h", "tools": [], "pins": {"porch_light": pin}}).encode()
    with pytest.raises(ValueError, match=problem):
        parse_manifest("d1", payload)


def test_a_class_the_bridge_does_not_know_is_left_out_rather_than_guessed(tmp_path):
    manifest = {"v": 1, "id": "d2", "hash": "h", "tools": [], "pins": {"gate": {"mode": "in",
                                                                            "device_class": "portal"}}}
    with fake_tiers(lambda req: Reply(text="hi")) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg, device_id="d2") as ctx:
                ctx.manifests.update("d2", json.dumps(manifest).encode())
                return await ask(ctx, "w2", device_id="d2")
        run(go())
    assert "gate (in)" in a.requests[0]["messages"][0]["content"]

