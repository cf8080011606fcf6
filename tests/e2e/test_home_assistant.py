"""Home Assistant's view of a device: MQTT discovery checked against Home Assistant's own rules
(tests/e2e/ha_rules.py), availability, switching and dimming through set/ and the REST API, inputs,
sensors that fail and come back, diagnostics, the restart button, restore at boot and removal.
A paho client plays Home Assistant; the firmware runs on the unix port against real mosquitto."""
import json
import urllib.request

import pytest

from tests.e2e import ha_rules
from tests.e2e.stack import Stack
from tests.support import Probe, firmware_limit, until
from tools import broker as brokers

TOKEN = "ha-token-7c1d"
PINS = {"porch_light": {"pin": 5, "mode": "out", "restore": "last"},
        "hall": {"pin": 12, "mode": "out", "ha": "light"},
        "door": {"pin": 4, "mode": "in", "pull": "up", "routine": "door_opened", "edge": "falling",
                 "device_class": "door"},
        "dimmer": {"pin": 25, "mode": "pwm", "ha": "light", "restore": "last"},
        "fan": {"pin": 26, "mode": "pwm"},
        "battery": {"pin": 34, "mode": "adc", "unit": "V"},
        "tank": {"pin": 35, "mode": "adc", "unit": "%", "scale": [0.025, -2.5]}}
EXTRA = {"sensors": {"room": {"type": "dht22", "pin": 15}}, "sensor_interval_s": 1,
         "ha": {"diagnostics_s": 1, "url": "http://bridge.lan:8080/"}}
INPUTS = {"dht": {"15": [21.5, 40]}, "adc": {"34": 2048, "35": 1100}}


@pytest.fixture(scope="module")
def house():
    port = brokers.free_port()
    with Stack(bridge_env={"WISP_API_TOKEN": TOKEN, "WISP_HTTP": f"127.0.0.1:{port}"}) as s:
        s.url = f"http://127.0.0.1:{port}"
        workdir = s.dir / "devices" / "ha1"
        workdir.mkdir(parents=True)
        _inputs(workdir)
        ha = Probe(s.broker.host, s.broker.port, topics=("homeassistant/#",))
        s.start_device("ha1", pins=PINS, extra=EXTRA)
        yield s, ha, workdir
        ha.close()


def _inputs(workdir, **changes):
    (workdir / "sim_inputs.json").write_text(json.dumps(dict(INPUTS, **changes)))


def _configs(ha, seconds=1.0):
    return {t: p for t, p in ha.drain(seconds) if t.endswith("/config") and p != ""}


def _rest_set(s, pin, state):
    req = urllib.request.Request(f"{s.url}/api/devices/ha1/pins/{pin}", data=json.dumps({"state": state}).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_every_discovery_payload_follows_home_assistants_rules(house):
    s, ha, _ = house
    configs = _configs(ha)
    by_component = {}
    bridge = {t: c for t, c in configs.items() if "/wisp_bridge_" in t}  # the stack's bridge announces itself
    [(topic, cfg)] = bridge.items()
    assert ha_rules.check("binary_sensor", cfg) == [] and ha_rules.topic_errors(topic) == [], (topic, cfg)
    assert cfg["dev_cla"] == "connectivity" and cfg["stat_t"].startswith("wisp/bridge/")
    for topic, cfg in configs.items():
        if topic in bridge:
            continue
        prefix, component, node, obj, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "wisp_ha1", "config")
        assert ha_rules.check(component, cfg) == [], (topic, cfg)
        assert [e for t in [topic, *ha_rules.config_topics(cfg)] for e in ha_rules.topic_errors(t)] == [], cfg
        assert "obj_id" not in cfg and cfg["def_ent_id"] == f"{component}.wisp_ha1_{obj}"  # the ids obj_id gave
        assert cfg["uniq_id"] == f"wisp_ha1_{obj}"
        by_component.setdefault(component, []).append(obj)
    assert {c: sorted(objs) for c, objs in by_component.items()} == {
        "switch": ["porch_light"], "light": ["dimmer", "hall"], "binary_sensor": ["door"], "number": ["fan"],
        "sensor": ["battery", "diag_boots", "diag_heap", "diag_rssi", "diag_temp", "diag_up", "room_h", "room_t",
                   "tank"],
        "button": ["diag_restart"]}


def test_every_state_topic_the_device_keeps_is_one_home_assistant_takes(house):
    s, _ha, _ = house
    watcher = Probe(s.broker.host, s.broker.port, topics=("wisp/ha1/state/#", "wisp/ha1/avail/#"))
    try:
        retained = dict(until(lambda: watcher.drain(0.5) or None, what="retained states"))
    finally:
        watcher.close()
    assert {"wisp/ha1/state/porch_light", "wisp/ha1/state/room", "wisp/ha1/avail/room"} <= retained.keys()
    assert [e for t in retained for e in ha_rules.topic_errors(t)] == []


def test_the_device_block_says_what_the_board_is(house):
    s, ha, _ = house
    ha.client.unsubscribe("homeassistant/#")
    ha.client.subscribe("homeassistant/switch/wisp_ha1/+/config", qos=1)  # retained: arrives again
    cfg = ha.wait_for("homeassistant/switch/wisp_ha1/porch_light/config")
    dev = cfg["dev"]
    assert dev["ids"] == ["wisp_ha1"] and dev["name"] == "wisp ha1" and dev["mf"] == "wisp"
    assert dev["mdl"] == "MicroPython unix port (simulated board)" and dev["hw"] == "sim"
    assert dev["sn"].startswith("sim") and dev["sw"]
    [(kind, mac)] = dev["cns"]
    assert kind == "mac" and len(mac.split(":")) == 6
    assert dev["cu"] == "http://bridge.lan:8080/#/device/ha1"
    assert cfg["o"]["name"] == "wisp" and cfg["o"]["sw"] == dev["sw"]
    ha.client.unsubscribe("homeassistant/switch/wisp_ha1/+/config")
    ha.client.subscribe("homeassistant/#", qos=1)


def test_inputs_sensors_and_analog_pins_carry_their_kind(house):
    s, ha, _ = house
    configs = _configs(ha, 1.0)
    door = configs["homeassistant/binary_sensor/wisp_ha1/door/config"]
    assert door["dev_cla"] == "door"  # Home Assistant shows open/closed
    temp, hum = (configs[f"homeassistant/sensor/wisp_ha1/room_{k}/config"] for k in "th")
    assert (temp["name"], temp["dev_cla"], temp["unit_of_meas"]) == ("room temperature", "temperature", "°C")
    assert (hum["name"], hum["dev_cla"], hum["unit_of_meas"]) == ("room humidity", "humidity", "%")
    battery = configs["homeassistant/sensor/wisp_ha1/battery/config"]
    assert (battery["dev_cla"], battery["unit_of_meas"]) == ("voltage", "V")
    assert s.probe.wait_for("wisp/ha1/state/battery", lambda v: v == 1.65, timeout=5)  # 2048 of 4095 at 3.3 V
    assert s.probe.wait_for("wisp/ha1/state/tank", lambda v: v == 25, timeout=5)  # 1100 * 0.025 - 2.5


def test_switch_through_set_and_state_follows(house):
    s, _, _ = house
    s.probe.publish("wisp/ha1/set/porch_light", "ON", qos=1)
    assert s.probe.wait_for("wisp/ha1/state/porch_light", lambda v: v == "ON") == "ON"
    s.probe.publish("wisp/ha1/set/porch_light", "BANANA", qos=1)
    event = s.probe.wait_for("wisp/ha1/event", lambda e: e.get("kind") == "error")
    assert "wants ON, OFF or TOGGLE" in event["text"]


def test_pwm_reports_its_real_duty_and_dims_as_a_light(house):
    s, _, _ = house
    s.probe.publish("wisp/ha1/set/dimmer", "40", qos=1)  # Home Assistant's brightness, scaled to 100
    assert s.probe.wait_for("wisp/ha1/state/dimmer", lambda v: v == 40) == 40
    s.probe.publish("wisp/ha1/set/dimmer", "OFF", qos=1)
    assert s.probe.wait_for("wisp/ha1/state/dimmer", lambda v: v == 0) == 0
    s.probe.publish("wisp/ha1/set/dimmer", "ON", qos=1)  # back to where it was
    assert s.probe.wait_for("wisp/ha1/state/dimmer", lambda v: v == 40) == 40
    for junk in ("inf", "nan", "bright"):
        s.probe.publish("wisp/ha1/set/dimmer", junk, qos=1)
        event = s.probe.wait_for("wisp/ha1/event", lambda e: e.get("kind") == "error")
        assert "wants a number 0-100, ON or OFF" in event["text"], event
    assert s.probe.wait_for("wisp/ha1/state/dimmer", lambda v: v == 40) == 40  # re-asserted, unchanged
    assert _rest_set(s, "fan", 30) == {"name": "fan", "state": 30}
    assert _rest_set(s, "fan", 72.6) == {"name": "fan", "state": 73}


def test_a_sensor_that_stops_answering_goes_unavailable_and_comes_back(house):
    s, _, workdir = house
    assert s.probe.wait_for("wisp/ha1/avail/room", lambda v: v == "online", timeout=5)
    _inputs(workdir, dht={})  # the DHT disconnected
    assert s.probe.wait_for("wisp/ha1/avail/room", lambda v: v == "offline", timeout=5)
    _inputs(workdir)
    assert s.probe.wait_for("wisp/ha1/avail/room", lambda v: v == "online", timeout=5)
    assert s.probe.wait_for("wisp/ha1/state/room", timeout=5) == {"t": 21.5, "h": 40.0}


def test_diagnostics_are_published_on_their_own(house):
    s, _, _ = house
    first = s.probe.wait_for("wisp/ha1/diag", timeout=5)
    later = s.probe.wait_for("wisp/ha1/diag", lambda d: d["up"] > first["up"], timeout=5)
    assert later["rssi"] == -50 and later["temp"] == 41.5 and later["boots"] == 1
    assert 0 < later["heap"] < 10_000_000


def test_an_input_edge_is_reported_and_runs_its_routine_locally(house):
    s, _, workdir = house
    s.probe.publish("wisp/ha1/cmd", {"v": 1, "id": "r1", "tool": "routine_define", "args": {
        "name": "door_opened", "steps": [{"tool": "gpio_write", "args": {"pin": "hall", "value": 1}}]}})
    res = s.probe.wait_for("wisp/ha1/cmd/res", lambda r: r.get("id") == "r1")
    assert res["ok"], res
    assert s.probe.wait_for("wisp/ha1/state/door") == "ON"  # pulled up
    _inputs(workdir, pins={"4": 0})
    assert s.probe.wait_for("wisp/ha1/state/door", lambda v: v == "OFF", timeout=5) == "OFF"
    assert s.probe.wait_for("wisp/ha1/state/hall", lambda v: v == "ON", timeout=5) == "ON"
    _inputs(workdir)


def test_home_assistant_restart_gets_the_configs_again(house):
    s, ha, _ = house
    ha.drain(0.2)
    ha.client.unsubscribe("homeassistant/#")
    ha.publish("homeassistant/status", "online", qos=1)
    ha.client.subscribe("homeassistant/+/wisp_ha1/+/config", qos=1)
    configs = _configs(ha, 1.5)
    assert len(configs) == 15
    ha.client.unsubscribe("homeassistant/+/wisp_ha1/+/config")
    ha.client.subscribe("homeassistant/#", qos=1)


def test_the_restart_button_restarts_once_and_restore_last_comes_back(house):
    s, ha, workdir = house
    guard_s = firmware_limit("RESTART_GUARD_MS") / 1000  # a press sooner after connecting is refused
    assert s.probe.wait_for("wisp/ha1/diag", lambda d: d["up"] > guard_s + 1, timeout=guard_s + 10)
    s.probe.publish("wisp/ha1/set/dimmer", "55", qos=1)
    assert s.probe.wait_for("wisp/ha1/state/dimmer", lambda v: v == 55) == 55
    # retained on purpose (Home Assistant never retains a press): the device must not obey it twice
    s.probe.publish("wisp/ha1/set/_restart", "reboot", retain=True)
    assert s.probe.wait_for("wisp/ha1/event", lambda e: e.get("kind") == "reboot", timeout=10)
    assert s.devices["ha1"].wait(timeout=10) == 3  # the unix port's machine.reset()
    s.start_device("ha1", pins=PINS, extra=EXTRA)
    refused = s.probe.wait_for("wisp/ha1/event", lambda e: "restart refused" in e.get("text", ""), timeout=10)
    assert refused
    assert s.probe.wait_for("wisp/ha1/set/_restart", lambda v: v == "", timeout=5) == ""  # retained press cleared
    assert s.probe.wait_for("wisp/ha1/diag", lambda d: d["boots"] == 2)
    assert s.probe.wait_for("wisp/ha1/state/porch_light", lambda v: v == "ON") == "ON"  # restore: last
    assert s.probe.wait_for("wisp/ha1/state/dimmer", lambda v: v == 55) == 55
    assert s.devices["ha1"].poll() is None  # still running: the leftover press was not obeyed


def test_a_pin_removed_from_the_config_is_removed_from_home_assistant(house):
    s, ha, _ = house
    s.probe.publish("wisp/ha1/set/hall", "ON", qos=1)
    assert s.probe.wait_for("wisp/ha1/state/hall", lambda v: v == "ON") == "ON"
    s.devices["ha1"].terminate()
    s.devices["ha1"].wait()
    ha.drain(0.2)
    s.start_device("ha1", pins={k: v for k, v in PINS.items() if k != "hall"}, extra=EXTRA)
    removed = ha.wait_for("homeassistant/light/wisp_ha1/hall/config", lambda p: p == "", timeout=10)
    assert removed == ""
    assert s.probe.wait_for("wisp/ha1/state/hall", lambda v: v == "", timeout=10) == ""  # its retained state too
    watcher = Probe(s.broker.host, s.broker.port, topics=("wisp/ha1/state/#",))
    try:
        retained = dict(until(lambda: watcher.drain(0.3) or None, what="retained states"))
        assert "wisp/ha1/state/hall" not in retained and "wisp/ha1/state/porch_light" in retained
    finally:
        watcher.close()
