"""Home Assistant's view of a device: MQTT discovery, availability, switching through set/,
inputs and sensors reported on their own. A paho client plays Home Assistant."""
import json

import pytest

from tests.e2e.stack import Stack
from tests.support import Probe

PINS = {"porch_light": {"pin": 5, "mode": "out"}, "hall": {"pin": 12, "mode": "out", "ha": "light"},
        "door": {"pin": 4, "mode": "in", "pull": "up", "routine": "door_opened", "edge": "falling"}}
SENSORS = {"sensors": {"room": {"type": "dht22", "pin": 15}}, "sensor_interval_s": 1}
COMMON = ("name", "uniq_id", "avty_t", "avty_tpl", "dev", "stat_t")
REQUIRED = {"switch": ("cmd_t",), "light": ("cmd_t",), "binary_sensor": (), "sensor": ()}


@pytest.fixture(scope="module")
def house():
    s = Stack()
    workdir = s.dir / "devices" / "ha1"
    workdir.mkdir(parents=True)
    (workdir / "sim_inputs.json").write_text(json.dumps({"dht": {"15": [21.5, 40]}}))
    ha = Probe(s.broker.host, s.broker.port, topics=("homeassistant/#",))
    s.start_device("ha1", pins=PINS, extra=SENSORS)
    yield s, ha, workdir
    ha.close()
    s.close()


def _configs(ha, seconds=1.0):
    return {t: p for t, p in ha.drain(seconds) if t.endswith("/config")}


def test_discovery_announces_every_pin_and_sensor_with_the_fields_home_assistant_needs(house):
    s, ha, _ = house
    configs = _configs(ha)
    by_component = {}
    for topic, cfg in configs.items():
        prefix, component, node, obj, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "wisp_ha1", "config")
        for key in COMMON + REQUIRED[component]:
            assert key in cfg, (topic, key)
        assert cfg["dev"]["ids"] == ["wisp_ha1"]
        assert cfg["avty_t"] == "wisp/ha1/status"
        by_component.setdefault(component, []).append(obj)
    assert {c: sorted(objs) for c, objs in by_component.items()} == {
        "switch": ["porch_light"], "light": ["hall"], "binary_sensor": ["door"], "sensor": ["room_h", "room_t"]}
    ids = [c["uniq_id"] for c in configs.values()]
    assert len(ids) == len(set(ids))
    temp = configs["homeassistant/sensor/wisp_ha1/room_t/config"]
    assert temp["dev_cla"] == "temperature" and temp["unit_of_meas"] == "°C"


def test_switch_through_set_and_state_follows(house):
    s, _, _ = house
    s.probe.publish("wisp/ha1/set/porch_light", "ON", qos=1)
    assert s.probe.wait_for("wisp/ha1/state/porch_light", lambda v: v == "ON") == "ON"
    s.probe.publish("wisp/ha1/set/porch_light", "OFF", qos=1)
    assert s.probe.wait_for("wisp/ha1/state/porch_light", lambda v: v == "OFF") == "OFF"
    s.probe.publish("wisp/ha1/set/porch_light", "BANANA", qos=1)
    event = s.probe.wait_for("wisp/ha1/event", lambda e: e.get("kind") == "error")
    assert "wants ON, OFF or TOGGLE" in event["text"]


def test_sensor_values_arrive_on_their_own(house):
    s, _, _ = house
    reading = s.probe.wait_for("wisp/ha1/state/room", timeout=5)
    assert reading == {"t": 21.5, "h": 40.0}


def test_an_input_edge_is_reported_and_runs_its_routine_locally(house):
    s, _, workdir = house
    s.probe.publish("wisp/ha1/cmd", {"v": 1, "id": "r1", "tool": "routine_define", "args": {
        "name": "door_opened", "steps": [{"tool": "gpio_write", "args": {"pin": "hall", "value": 1}}]}})
    res = s.probe.wait_for("wisp/ha1/cmd/res", lambda r: r.get("id") == "r1")
    assert res["ok"], res
    assert s.probe.wait_for("wisp/ha1/state/door") == "ON"  # pulled up
    (workdir / "sim_inputs.json").write_text(json.dumps({"dht": {"15": [21.5, 40]}, "pins": {"4": 0}}))
    assert s.probe.wait_for("wisp/ha1/state/door", lambda v: v == "OFF", timeout=5) == "OFF"
    assert s.probe.wait_for("wisp/ha1/state/hall", lambda v: v == "ON", timeout=5) == "ON"


def test_home_assistant_restart_gets_the_configs_again(house):
    s, ha, _ = house
    ha.drain(0.2)
    ha.client.unsubscribe("homeassistant/#")
    ha.publish("homeassistant/status", "online", qos=1)
    ha.client.subscribe("homeassistant/+/wisp_ha1/+/config", qos=1)
    configs = _configs(ha, 1.5)
    assert len(configs) >= 5


def test_a_pin_removed_from_the_config_is_removed_from_home_assistant(house):
    s, ha, _ = house
    s.devices["ha1"].terminate()
    s.devices["ha1"].wait()
    ha.drain(0.2)
    s.start_device("ha1", pins={k: v for k, v in PINS.items() if k != "hall"}, extra=SENSORS)
    removed = ha.wait_for("homeassistant/light/wisp_ha1/hall/config", lambda p: p == "", timeout=10)
    assert removed == ""
