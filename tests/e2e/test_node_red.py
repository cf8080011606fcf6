"""What Node-RED's MQTT nodes send a device, byte for byte, and what they get back: the real firmware
on real mosquitto, paho publishing exactly what Node-RED 4.1's `mqtt out` node writes (a number or a
boolean as its text, `1` and `true`; an object as its JSON.stringify, no spaces). Node-RED itself is
not needed here: tools/nodered_check.py runs a real one against the flow of docs/node-red.md."""
import json

import pytest

from tests.e2e.stack import Stack

PINS = {"porch_light": {"pin": 26, "mode": "out", "min_interval_ms": 0},
        "hall": {"pin": 12, "mode": "out", "min_interval_ms": 0},
        "dimmer": {"pin": 25, "mode": "pwm"},
        "door": {"pin": 4, "mode": "in", "pull": "up", "device_class": "door"}}


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        s.start_device("nr1", pins=PINS)
        yield s


def _send(stack, topic, payload: bytes):
    stack.probe.publish("wisp/nr1/" + topic, payload, qos=0)  # Node-RED's mqtt out: QoS 0 unless set


def _set(stack, pin, payload: bytes):
    """What the device says the pin is after `payload` on set/<pin>: its next state message (a
    refused one says the state again)."""
    stack.probe.drain(0.1)  # earlier states are no answer to this one
    _send(stack, "set/" + pin, payload)
    return stack.probe.wait_for("wisp/nr1/state/" + pin, timeout=5)


def test_a_numeric_id_comes_back_as_it_was_sent(stack):
    # `id: Date.now()` or a counter in a function node: JSON.stringify writes a number
    _send(stack, "cmd", b'{"v":1,"id":1796618584221,"tool":"gpio_read","args":{"pin":"door"}}')
    res = stack.probe.wait_for("wisp/nr1/cmd/res", lambda r: r.get("result") == "door=1")
    assert res["id"] == 1796618584221 and res["ok"] is True
    _send(stack, "ask", b'{"v":1,"id":17,"text":"is the door open?"}')  # the fast path
    reply = stack.probe.wait_for("wisp/nr1/reply", lambda r: r.get("id") is not None)
    assert reply["id"] == 17 and reply["ok"] is True and reply["text"] == "door is open"
    _send(stack, "ask", b'{"v":1,"id":18,"text":"it is getting dark outside, light the porch"}')  # the LLM
    reply = stack.probe.wait_for("wisp/nr1/reply", lambda r: r.get("id") is not None, timeout=20)
    assert reply == {"v": 1, "id": 18, "ok": True, "text": "The porch light is on.", "path": "llm",
                     "tier": "local", "ms": reply["ms"]}
    _send(stack, "cmd", b'{"v":1,"id":true,"tool":"gpio_read","args":{"pin":"door"}}')  # no id: a flag
    assert stack.probe.wait_for("wisp/nr1/cmd/res", lambda r: r.get("result") == "door=1")["id"] is None


def test_a_dashboard_switchs_true_and_false_turn_a_pwm_pin_on_and_off(stack):
    # a boolean from an inject or a ui switch node: `true` / `false`, as it does on an output
    assert _set(stack, "dimmer", b"60") == 60
    assert _set(stack, "dimmer", b"false") == 0
    assert _set(stack, "dimmer", b"true") == 60  # back to where it was, as ON
    assert _set(stack, "dimmer", b"37.5") == 38  # a number with a fraction: whole percents


@pytest.mark.parametrize("payload, state", [(b"1", "ON"), (b"0", "OFF"), (b"true", "ON"), (b"false", "OFF"),
                                            (b"ON", "ON"), (b"off", "OFF")])
def test_what_node_red_sends_switches_an_output(stack, payload, state):
    assert _set(stack, "hall", b"OFF" if state == "ON" else b"ON") != state
    assert _set(stack, "hall", payload) == state


def test_an_object_on_set_is_refused_in_words_and_the_state_said_again(stack):
    assert _set(stack, "hall", b"OFF") == "OFF"
    assert _set(stack, "hall", json.dumps({"state": "ON"}, separators=(",", ":")).encode()) == "OFF"
    event = stack.probe.wait_for("wisp/nr1/event", lambda e: e.get("kind") == "error")
    assert event["text"] == "Error: set/hall wants ON, OFF or TOGGLE, got '{\"STATE\":\"ON\"}'"
