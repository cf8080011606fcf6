"""Optional check, outside `make test` (it needs Node-RED, which wisp does not install): a real
Node-RED runs the example flow of docs/node-red.md (docs/node-red-flow.json) against a wisp device
(the firmware on the unix port with `wisp run`'s pins, a PWM pin, an analog pin and a DHT sensor),
real mosquitto and the bridge with a stand-in LLM tier, once with the flow's MQTT 3.1.1 broker
node and once switched to MQTT v5. It presses every inject node through the admin API, reads what
the debug nodes show from the editor's websocket, and checks each against what docs/node-red.md
promises: the JavaScript type a node gets, the ids that come back, the bytes, QoS and retain flag
Node-RED published, the door automation, the device dropping off and coming back. Then it walks
"A provisioned fleet" of the same page on `wisp run --secure` (a temporary run directory, its broker
on 127.0.0.1 only): the broker node's wisp-admin login, an unsigned command refused, and signed ones
through the bridge's REST API from inject -> function -> http request -> debug chains. Prints one
line per check; exit status 1 on any mismatch, or on any warning or error a Node-RED node raised.

    npm install --prefix /tmp/nr node-red
    .venv/bin/python -m tools.nodered_check /tmp/nr/node_modules/.bin/node-red
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from tests.e2e.stack import PROVIDER_ENV, Stack
from tests.support import Check, retained
from tools import sim
from tools.nodered import NodeRed
from tools.paths import REPO

FLOW = REPO / "docs" / "node-red-flow.json"
DEVICE = "dev1"
# `wisp run`'s pins, which the flow switches, and one of each kind whose state arrives as a number
# or an object: what docs/node-red.md says a node gets from each
PINS = dict(sim.DEFAULT_PINS, dimmer={"pin": 25, "mode": "pwm"}, battery={"pin": 34, "mode": "adc", "unit": "V"})
EXTRA = {"sensors": {"room": {"type": "dht22", "pin": 15}}, "sensor_interval_s": 1}
INPUTS = {"dht": {"15": [21.5, 40.2]}, "adc": {"34": 2048}}  # the sensor's reading; 2048 of 4095 is 1.650 V
RETAINED = (("fan", "OFF", "string"), ("heater", "OFF", "string"), ("door", "ON", "string"),
            ("dimmer", 0, "number"), ("battery", 1.65, "number"), ("room", {"t": 21.5, "h": 40.2}, "object"))
WAIT_S = 10.0
LLM_WAIT_S = 35.0  # the device gives up on the bridge after 30 s (ROUND_TIMEOUT_MS)
# what would point the stacks elsewhere than this check's own: a real LLM, another fleet, run
# directory or token (then Node-RED could find WISP_API_TOKEN without the tab's)
FOREIGN_ENV = (*PROVIDER_ENV, "WISP_FLEET", "WISP_RUN_DIR", "WISP_API_TOKEN", "WISP_HTTP", "WISP_BROKER_USER",
               "WISP_BROKER_PASSWORD", "WISP_DEVICE_KEYS")


class Sent:
    """What Node-RED published to the device's inbox topics, with the retain flag as published
    (an MQTT v5 subscription with retain-as-published: 3.1.1 would always show it cleared)."""

    def __init__(self, host, port):
        self.messages, self._lock = [], threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        opts = mqtt.SubscribeOptions(qos=2, retainAsPublished=True)
        self.client.subscribe([(f"wisp/{DEVICE}/{t}", opts) for t in ("ask", "cmd", "set/+")])
        if not subscribed.wait(5):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, _c, _u, m):
        with self._lock:
            self.messages.append((m.topic, m.payload, m.qos, m.retain))

    def since(self, n):
        with self._lock:
            return self.messages[n:]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def flow_for(host, port, version):
    flow = json.loads(FLOW.read_text())
    for node in flow:
        if node["type"] == "mqtt-broker":
            node.update(broker=host, port=str(port), protocolVersion=str(version))
        if node["type"] == "tab":
            node["env"] = [dict(e, value=DEVICE) if e["name"] == "WISP_DEVICE" else e for e in node.get("env", [])]
    return flow


def inject_id(flow, name):
    return next(n["id"] for n in flow if n["type"] == "inject" and n["name"] == name)


def shown(red, start, name, match=lambda s: True, timeout=WAIT_S):
    """The first message debug node `name` showed after index `start` that `match` accepts, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in red.debug.shown[start:]:
            if s.name == name and match(s):
                return s
        time.sleep(0.05)
    return None


def state_shown(red, start, pin, value, timeout=WAIT_S):
    return shown(red, start, "state", lambda s: s.topic == f"wisp/{DEVICE}/state/{pin}" and s.value == value, timeout)


def run_flow(red, stack, sent, version, check):
    host, port = stack.broker.host, stack.broker.port
    flow = flow_for(host, port, version)
    print(f"-- the example flow, broker node on MQTT {'v5' if version == 5 else '3.1.1'}")
    start, n_sent = len(red.debug.shown), len(sent.messages)
    red.deploy(flow)
    online = shown(red, start, "online", lambda s: s.value.get("online") is True)
    check(online is not None and online.type == "object" and online.value == {"device": DEVICE, "online": True,
                                                                              "fw": online.value.get("fw")},
          "the retained status: online as an object", online)
    for pin, value, kind in RETAINED:
        s = state_shown(red, start, pin, value)
        check(s is not None and s.type == kind, f"the retained state/{pin}: the {kind} {json.dumps(value)}", s)
    time.sleep(1.5)  # the door automation must not take the retained "door open" for a door that opens
    check(not [m for m in sent.since(n_sent) if m[0].endswith("/set/porch_light")],
          "a door already open at deploy switches nothing", sent.since(n_sent))

    def press(name, debug_name, match, timeout=WAIT_S):
        at, n = len(red.debug.shown), len(sent.messages)
        red.inject(inject_id(flow, name))
        got = shown(red, at, debug_name, match, timeout)
        return got, sent.since(n), at

    def published(msgs, topic, payload=None):
        """Node-RED's one publish on `topic`: QoS 1, not retained, these bytes when given."""
        mine = [m for m in msgs if m[0] == f"wisp/{DEVICE}/{topic}"]
        return len(mine) == 1 and mine[0][2] == 1 and not mine[0][3] and (payload is None or mine[0][1] == payload)

    def ask_id(msgs):
        ask = [json.loads(m[1]) for m in msgs if m[0].endswith("/ask")]
        return ask[0].get("id") if ask else None

    got, msgs, _ = press("is the door open?", "reply", lambda s: True)
    check(published(msgs, "ask") and isinstance(ask_id(msgs), str), "the ask: JSON, QoS 1, not retained", msgs)
    check(got is not None and got.type == "object" and got.value.get("id") == ask_id(msgs)
          and got.value.get("ok") is True and got.value.get("text") == "door is open"
          and got.value.get("path") == "device", "its reply: the same id, ok, 'door is open', from the device", got)

    got, msgs, at = press("light up the porch", "reply", lambda s: True, LLM_WAIT_S)
    check(got is not None and got.value.get("id") == ask_id(msgs) and got.value.get("ok") is True
          and got.value.get("path") == "llm" and got.value.get("text") == "The porch light is on.",
          "an ask for the LLM: its reply through the bridge", got)
    check(state_shown(red, at, "porch_light", "ON") is not None, "state/porch_light: ON")

    for name, result, pin, value in (("porch light off", "ok: porch_light=0", "porch_light", "OFF"),
                                     ("read the door", "door=1", None, None)):
        got, msgs, at = press(name, "cmd/res", lambda s: True)
        cmd = [json.loads(m[1]) for m in msgs if m[0].endswith("/cmd")]
        check(published(msgs, "cmd") and cmd and isinstance(cmd[0].get("id"), str),
              f"the command '{name}': JSON, QoS 1, not retained", msgs)
        check(got is not None and got.type == "object" and cmd and got.value.get("id") == cmd[0]["id"]
              and got.value.get("ok") is True and got.value.get("result") == result,
              f"its cmd/res: the same id, ok, {result!r}", got)
        if pin:
            check(state_shown(red, at, pin, value) is not None, f"state/{pin}: {value}")

    for name, topic, payload, pin, value in (("fan ON", "set/fan", b"ON", "fan", "ON"),
                                             ("fan false", "set/fan", b"false", "fan", "OFF"),
                                             ("heater 1", "set/heater", b"1", "heater", "ON"),
                                             ("heater TOGGLE", "set/heater", b"TOGGLE", "heater", "OFF")):
        got, msgs, _ = press(name, "state", lambda s, p=pin, v=value: s.topic.endswith("/" + p) and s.value == v)
        check(published(msgs, topic, payload), f"'{name}' publishes {payload.decode()!r} on {topic}, QoS 1, "
                                               "not retained", msgs)
        check(got is not None and got.type == "string", f"state/{pin}: the string {value!r}", got)

    at = len(red.debug.shown)
    stack.probe.publish(f"wisp/{DEVICE}/set/fan", "BANANA", qos=1)  # a refusal, from outside the flow
    got = shown(red, at, "event", lambda s: True)
    check(got is not None and got.type == "object" and got.value.get("kind") == "error"
          and "wants ON, OFF or TOGGLE" in got.value.get("text", ""), "a refused set/: an event object in words", got)

    inputs = stack.dir / "devices" / DEVICE / "sim_inputs.json"
    at, n = len(red.debug.shown), len(sent.messages)
    inputs.write_text(json.dumps(dict(INPUTS, pins={"4": 0})))  # the door closes
    check(state_shown(red, at, "door", "OFF") is not None, "the door closes: state/door OFF, live")
    inputs.write_text(json.dumps(dict(INPUTS, pins={"4": 1})))  # and opens
    check(state_shown(red, at, "porch_light", "ON") is not None, "the door opens: the automation turns the "
                                                                 "porch light on")
    check(published(sent.since(n), "set/porch_light", b"ON"), "its set/porch_light: 'ON', QoS 1, not retained",
          sent.since(n))

    at = len(red.debug.shown)
    stack.devices[DEVICE].send_signal(signal.SIGKILL)  # the power goes: the broker publishes its last will
    stack.devices[DEVICE].wait()
    offline = shown(red, at, "online", lambda s: s.value.get("online") is False)
    check(offline is not None and offline.value == {"device": DEVICE, "online": False, "fw": None},
          "the device drops off: online false (its last will)", offline)
    stack.start_device(DEVICE, pins=PINS, extra=EXTRA)
    check(shown(red, at, "online", lambda s: s.value.get("online") is True) is not None, "it comes back: online true")

    left = retained(host, port, [f"wisp/{DEVICE}/{t}" for t in ("ask", "cmd", "set/+")])
    check(not left, "nothing Node-RED sent is left retained on the broker", left)


def main(node_red_bin):
    if node_red_bin in ("-h", "--help"):
        print(__doc__)
        return 0
    found = shutil.which(node_red_bin)
    if not found:  # before anything starts: a missing Node-RED leaves no broker or temporary folder behind
        print(f"wisp: no Node-RED at {node_red_bin!r}: give the path of its `node-red` command, "
              f"`python -m tools.nodered_check <path to node-red>` (tools/nodered_check.py says how to "
              f"install one)", file=sys.stderr)
        return 2
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    root = tempfile.mkdtemp(prefix="wisp-node-red-")
    check, stack, red, sent = Check(), None, None, None
    try:
        stack = Stack()
        (stack.dir / "devices" / DEVICE).mkdir(parents=True)
        (stack.dir / "devices" / DEVICE / "sim_inputs.json").write_text(json.dumps(INPUTS))
        stack.start_device(DEVICE, pins=PINS, extra=EXTRA)
        sent = Sent(stack.broker.host, stack.broker.port)
        red = NodeRed(found, root)
        print(f"Node-RED {red.version}, wisp device {DEVICE} on mosquitto {stack.broker_addr}")
        for version in (4, 5):
            run_flow(red, stack, sent, version, check)
        from tools.nodered_fleet_check import run_fleet  # its own file; it builds on this one's helpers
        run_fleet(red, stack.base_url, root, check)
        check(not red.debug.problems, "no Node-RED node warned or failed", red.debug.problems)
    finally:
        for part in (red, sent, stack):
            if part:
                part.close()
        if stack:
            shutil.rmtree(stack.dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    print("all checks passed" if not check.failed else f"{check.failed} mismatch(es)")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "node-red"))
