"""What Node-RED's MQTT nodes send a device, byte for byte, and what they get back: the real firmware
on real mosquitto, paho publishing exactly what Node-RED 4.1's `mqtt out` node writes (a number or a
boolean as its text, `1` and `true`; an object as its JSON.stringify, no spaces). Node-RED itself is
not needed here: tools/nodered_check.py runs a real one against the flow of docs/node-red.md."""
import pytest

from tests.e2e.stack import Stack

PINS = {"porch_light": {"pin": 26, "mode": "out", "min_interval_ms": 0},
        "hall": {"pin": 12, "mode": "out", "min_interval_ms": 0},
        "dimmer": {"pin": 25, "mode": "pwm"},
        "door": {"pin": 4, "mode": "in", "pull": "up", "device_class": "door"}}


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    s.start_device("nr1", pins=PINS)
    yield s
    s.close()


def _send(stack, topic, payload: bytes):
    stack.probe.publish("wisp/nr1/" + topic, payload, qos=0)  # Node-RED's mqtt out: QoS 0 unless set


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
