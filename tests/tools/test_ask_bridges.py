"""`wisp ask` tells whether a bridge is up when the model is what the device waits for: on the progress line while
it waits, and next to the device's "no answer from the bridge". A scripted device on the real broker (the device's
own 30 s round timeout is not waited for here), bridges as their presence topics show them."""
import json
import threading

import paho.mqtt.client as mqtt
import pytest

from tests.support import Probe
from tools.ask import ask
from tools.broker import start_mosquitto

NO_ANSWER = "Error: no answer from the bridge within 30 s (is a bridge running?)"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of its own: bridges of other tests leave their presence retained on the shared one."""
    b = start_mosquitto(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


class ScriptedDevice:
    """Online; to each ask it sends one llm/req for round 0, then replies that no bridge answered."""

    def __init__(self, broker, dev_id):
        self.dev_id = dev_id
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_ask
        self.client.connect(broker.host, broker.port)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.loop_start()
        self.client.subscribe(f"wisp/{dev_id}/ask", 1)
        assert subscribed.wait(5)
        online = json.dumps({"v": 1, "state": "online"})
        self.client.publish(f"wisp/{dev_id}/status", online, 1, True).wait_for_publish(5)

    def _on_ask(self, _client, _userdata, msg):
        ask_id = json.loads(msg.payload)["id"]
        self.client.publish(f"wisp/{self.dev_id}/llm/req", json.dumps({"v": 1, "id": ask_id + ".a1b2c3", "round": 0}))
        self.client.publish(f"wisp/{self.dev_id}/reply",
                            json.dumps({"v": 1, "id": ask_id, "ok": False, "text": NO_ANSWER, "path": "llm"}))

    def close(self):
        self.client.publish(f"wisp/{self.dev_id}/status", b"", 1, True).wait_for_publish(5)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.parametrize("presence, said, waiting", [
    ({}, "No bridge is online on this broker (wisp/bridge/+/status names none).", "(no bridge is online)"),
    ({"attic": "offline"}, "No bridge is online on this broker", "(no bridge is online)"),
    ({"attic": "online", "cellar": "offline"}, "Bridge(s) online: attic; see their logs.", None),
], ids=["none ever", "one stopped", "one up"])
def test_no_answer_from_the_bridge_says_which_bridges_are_up(broker, presence, said, waiting):
    dev_id = "hint" + str(len(presence))
    probe = Probe(broker.host, broker.port)
    device = ScriptedDevice(broker, dev_id)
    try:
        for name, state in presence.items():
            probe.publish(f"wisp/bridge/{name}/status", {"v": 1, "name": name, "state": state}, retain=True)
        seen = []
        reply = ask(broker.host, broker.port, dev_id, "what is the weather", timeout_s=10, progress=seen.append)
        assert reply["text"].startswith(NO_ANSWER) and said in reply["text"], reply
        line = next(s for s in seen if s.startswith("round 1: waiting for the model"))
        assert line == "round 1: waiting for the model" + (f" {waiting}" if waiting else "")
    finally:
        for name in presence:
            probe.publish(f"wisp/bridge/{name}/status", b"", retain=True)
        device.close()
        probe.close()
