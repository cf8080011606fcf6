"""Retained messages on the device's command topics, with real mosquitto and the real firmware:
the broker replays them at every (re)subscribe with RETAIN set (MQTT 3.1.1, 3.3.1.3), so a
retained ask or cmd must be refused and cleared, not run again after every reconnect; a retained
set/<pin> ON is Home Assistant restoring a state, and is applied."""
import json
import socket
import struct
import time

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.stack import Stack
from tests.support import until


@pytest.fixture
def stack():
    s = Stack(with_tier=False)
    yield s
    s.close()


def _take_over(stack, client_id):
    """A second connection with the device's client id: mosquitto drops the device's (MQTT-3.1.4-2),
    which reconnects and subscribes again, as after any dropped link."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + struct.pack("!H", len(cid)) + cid
    with socket.create_connection((stack.broker.host, stack.broker.port), timeout=5) as s:
        s.sendall(bytes((0x10, len(body))) + body)
        assert s.recv(4) == b"\x20\x02\x00\x00"


def _retained(stack, topic):
    """The retained message the broker holds on `topic`, or None."""
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: got.append(m.payload) if m.retain else None
    c.connect(stack.broker.host, stack.broker.port)
    c.loop_start()
    c.subscribe(topic, 1)
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def test_retained_commands_are_refused_and_cleared_not_run_at_every_reconnect(stack):
    p = stack.probe
    p.publish("wisp/dev1/cmd", {"v": 1, "id": "c1", "tool": "gpio_toggle", "args": {"pin": "heater"}}, retain=True)
    p.publish("wisp/dev1/ask", {"v": 1, "id": "a1", "text": "turn on the fan"}, retain=True)
    p.publish("wisp/dev1/set/porch_light", "ON", retain=True)  # Home Assistant's `retain: true`
    stack.start_device("dev1")
    seen = []

    def events():
        seen.extend(p.drain(0.2))
        return [m["text"] for t, m in seen if t == "wisp/dev1/event" and isinstance(m, dict)]

    until(lambda: sum("retained" in e for e in events()) >= 2, 10, "the retained ask and cmd refused")
    assert any(e.startswith("retained cmd refused: publish it without retain") for e in events())
    assert any(e.startswith("retained ask refused") for e in events())
    until(lambda: ("wisp/dev1/state/porch_light", "ON") in seen, 10, "the retained set/porch_light ON applied")
    assert _retained(stack, "wisp/dev1/cmd") is None and _retained(stack, "wisp/dev1/ask") is None
    assert _retained(stack, "wisp/dev1/set/porch_light") == b"ON"  # Home Assistant's to keep

    connects = stack.console("dev1").count("online as dev1")
    _take_over(stack, "wisp-dev1")
    until(lambda: stack.console("dev1").count("online as dev1") > connects, 15, "the device back online")
    events()
    time.sleep(1)
    events()
    acted = [(t, m) for t, m in seen if t in ("wisp/dev1/cmd/res", "wisp/dev1/reply")
             or (t in ("wisp/dev1/state/heater", "wisp/dev1/state/fan") and m == "ON")]
    assert not acted, acted
    assert sum("retained" in e for e in events()) == 2, events()  # refused once: nothing left to replay
    assert json.loads(_retained(stack, "wisp/dev1/status"))["state"] == "online"
