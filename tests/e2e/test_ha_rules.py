"""The Home Assistant rules the discovery test relies on catch what Home Assistant would warn about
or refuse, so a passing discovery test means something."""
from tests.e2e import ha_rules

GOOD = {"name": "porch light", "uniq_id": "wisp_d_porch_light", "def_ent_id": "switch.wisp_d_porch_light",
        "avty_t": "wisp/d/status", "avty_tpl": "{{ value_json.state }}", "stat_t": "wisp/d/state/porch_light",
        "cmd_t": "wisp/d/set/porch_light", "dev": {"ids": ["wisp_d"], "name": "wisp d", "cns": [["mac", "02:00"]]},
        "o": {"name": "wisp", "sw": "0.1.0"}}


def _errors(component="switch", **changes):
    payload = dict(GOOD, **dict({"def_ent_id": component + ".wisp_d_porch_light"}, **changes))
    return ha_rules.check(component, {k: v for k, v in payload.items() if v is not None})


def test_a_good_payload_passes():
    assert _errors() == []


def test_deprecated_unknown_and_misplaced_keys_are_caught():
    assert _errors(obj_id="wisp_d_porch_light") == ["object_id is deprecated: use default_entity_id"]
    assert _errors(colour="red") == ["unknown key 'colour'", "colour is not a switch option"]
    assert "min is not a switch option" in _errors(min=0)
    assert _errors(cmd_t=None) == ["missing command_topic"]
    assert "availability_topic and availability are exclusive" in _errors(avty=[{"t": "x"}])


def test_ids_device_and_origin_blocks_are_checked():
    assert _errors("light", def_ent_id="switch.wisp_d_porch_light")  # wrong domain
    assert _errors(def_ent_id="switch.wisp-d")  # not a slug
    assert _errors(dev={"name": "no ids"}) == ["device: needs identifiers or connections"]
    assert _errors(dev={"ids": ["x"], "cns": [["mac"]]})
    assert _errors(dev={"ids": ["x"], "cu": "bridge.lan"}) == ["device: configuration_url 'bridge.lan' is not a URL"]
    assert _errors(o={"sw": "1"}) == ["origin: name required"]


def test_device_classes_units_and_state_classes_are_checked():
    sensor = {"stat_t": "wisp/d/diag", "cmd_t": None}
    assert _errors("sensor", **sensor, dev_cla="signal_strength", unit_of_meas="dBm", stat_cla="measurement") == []
    assert _errors("sensor", **sensor, dev_cla="signal_strength", unit_of_meas="%") == [
        "unit '%' not valid for signal_strength"]
    assert _errors("sensor", **sensor, dev_cla="temperature", unit_of_meas="°C", stat_cla="total_increasing") == [
        "state_class 'total_increasing' not valid for temperature"]
    assert _errors("binary_sensor", **sensor, dev_cla="portal") == ["binary_sensor device_class 'portal'"]
    assert _errors("button", cmd_t="x", stat_t=None, dev_cla="reboot") == ["button device_class 'reboot'"]
    assert _errors(ent_cat="hidden") == ["entity_category='hidden' not one of ['config', 'diagnostic']"]


def test_topics_home_assistant_or_the_broker_refuse_are_caught():
    good = ["homeassistant/switch/wisp_d/porch_light/config", "homeassistant/sensor/wisp_d/room_t/config",
            "homeassistant/button/wisp-d/diag_restart/config", "wisp/d/state/Porch-Light_2", "wisp/d/set/_restart",
            "ha2/light/wisp_d/hall/config"]
    assert [e for t in good for e in ha_rules.topic_errors(t, "ha2" if t.startswith("ha2") else "homeassistant")] == []
    assert ha_rules.topic_errors("homeassistant/switch/wisp_d/porch light/config") == [
        "illegal discovery topic 'homeassistant/switch/wisp_d/porch light/config'"]
    assert ha_rules.topic_errors("homeassistant/switch/wisp_d/Küche/config")
    assert ha_rules.topic_errors("homeassistant/switch/wisp_d/a/b/config")  # one node id at most
    assert ha_rules.topic_errors("homeassistant/fan/wisp_d/x/config")  # not a platform wisp publishes
    assert ha_rules.topic_errors("wisp/d/state/lamp+") == [
        "wildcard in 'wisp/d/state/lamp+'", "level 'lamp+' of 'wisp/d/state/lamp+' is not [a-zA-Z0-9_-]+"]
    assert ha_rules.topic_errors("wisp/d/state/porch light")
    assert ha_rules.topic_errors("wisp/d/state/")  # an empty level
    assert ha_rules.config_topics({"stat_t": "a/b", "cmd_t": "a/c", "avty": [{"t": "a/d"}], "name": "x"}) == [
        "a/b", "a/c", "a/d"]
