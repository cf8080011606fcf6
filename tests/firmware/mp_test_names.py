# Names at boot: pin and sensor names become MQTT topics and Home Assistant ids, so a name Home
# Assistant refuses, one with an MQTT wildcard, or one that takes the device's own entities (or a
# sensor's) is left out with a config error naming it; the rest boots and is announced.
import json

from fakeboard import make_device
from mpcheck import check

from wisp import config, ha

TOPIC_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def _boot(cfg):
    """config.json through wisp/config.py, then the device built from what it kept, as at boot."""
    with open("config.json", "w") as f:
        json.dump(cfg, f)
    logged = []
    cfg, _errs = config.load("config.json", logged.append)
    dev = make_device(cfg.get("pins", {}), extra={k: cfg[k] for k in ("sensors", "ha") if k in cfg})
    dev.logged = logged + dev.logged
    return dev


async def _discovery_topics(dev):
    await ha.announce(dev)
    return [t for t, p, _r, _q in dev.link.sent if t.startswith("homeassistant/") and p]


def _legal(topic):
    """Home Assistant's discovery topic rule (mqtt/discovery.py TOPIC_MATCHER), in full."""
    parts = topic.split("/")
    return len(parts) == 5 and parts[-1] == "config" and all(
        p and all(c in TOPIC_CHARS for c in p) for p in parts[1:4])


async def test_names_home_assistant_or_mqtt_refuse_are_left_out_with_the_rule():
    dev = _boot({"pins": {"porch light": {"pin": 5}, "Küche": {"pin": 18}, "lamp+": {"pin": 19},
                          "#": {"pin": 21}, "x" * 33: {"pin": 22}, "Porch-Light_2": {"pin": 23}},
                 "sensors": {"living room": {"type": "dht22", "pin": 15}, "attic": {"type": "dht11", "pin": 16}}})
    check(sorted(dev.pins) == ["Porch-Light_2"], sorted(dev.pins))
    text = "\n".join(dev.logged)
    for name in ("pin 'porch light'", "pin 'Küche'", "pin 'lamp+'", "pin '#'", "pin '%s'" % ("x" * 33),
                 "sensor 'living room'"):
        check(name + ": a name must be 1-32 of A-Z a-z 0-9 _ -" in text, (name, dev.logged))
    topics = await _discovery_topics(dev)
    check(topics and all(_legal(t) for t in topics), topics)
    check("homeassistant/sensor/wisp_t1/attic_t/config" in topics, "the valid sensor is announced")
    states = [t for t, *_ in dev.link.sent if "/state/" in t]
    check(all("+" not in t and "#" not in t and " " not in t for t in states), states)


async def test_names_that_take_the_devices_or_a_sensors_entities_are_left_out():
    dev = _boot({"pins": {"diag_rssi": {"pin": 36, "mode": "adc"}, "room_t": {"pin": 39, "mode": "adc"},
                          "room_h": {"pin": 5}, "room": {"pin": 18}, "_restart": {"pin": 19},
                          "roomy": {"pin": 21}, "chip": {"pin": 22}},
                 "sensors": {"room": {"type": "dht22", "pin": 15}, "chip": {"type": "dht11", "pin": 16},
                             "diag_x": {"type": "dht11", "pin": 17}}})
    check(sorted(dev.pins) == ["chip", "roomy"], sorted(dev.pins))
    check(sorted(dev.config["sensors"]) == ["room"], dev.config["sensors"])
    text = "\n".join(dev.logged)
    for frag in ("pin 'diag_rssi': diag_*, _restart (and chip for a sensor) are the device's own names",
                 "pin '_restart': diag_*", "sensor 'chip': diag_*", "sensor 'diag_x': diag_*",
                 "pin 'room_t': the name is taken by sensor 'room' (room, room_t, room_h)",
                 "pin 'room_h': the name is taken by sensor 'room'", "pin 'room': the name is taken by sensor 'room'"):
        check(frag in text, (frag, dev.logged))
    await ha.announce(dev)
    ids = [json.loads(p)["uniq_id"] for t, p, _r, _q in dev.link.sent if t.endswith("/config") and p]
    check(len(ids) == len(set(ids)), "two entities share a unique id: %s" % ids)
    check("homeassistant/sensor/wisp_t1/room_t/config" in [t for t, *_ in dev.link.sent], "sensor room announced")


def test_mv_without_scale_is_refused_at_boot():
    # the raw 0-4095 count announced as millivolts would be a wrong voltage in Home Assistant
    dev = make_device({"mv": {"pin": 36, "mode": "adc", "unit": "mV"},
                       "mv_scaled": {"pin": 39, "mode": "adc", "unit": "mV", "scale": [0.8, 0]},
                       "volts": {"pin": 34, "mode": "adc", "unit": "V"}})
    check(sorted(dev.pins) == ["mv_scaled", "volts"], sorted(dev.pins))
    check(any("pin 'mv': unit mV needs scale [k, b]" in line for line in dev.logged), dev.logged)


def _device_block(dev):
    return [json.loads(p)["dev"] for t, p, _r, _q in dev.link.sent if t.endswith("/config") and p]


async def test_url_without_a_host_is_left_out_with_one_warning():
    # "http://" gave "cu": "http:/#/device/t1", and Home Assistant refused every entity of the device
    for url in ("http://", "https://", "http://:8080", "http:///x", "http://?x", "bridge.lan"):
        dev = _boot({"pins": {"lamp": {"pin": 5}}, "ha": {"url": url}})
        check(sum("ha.url left out: url must be http(s)://<host>" in line for line in dev.logged) == 1,
              (url, dev.logged))
        await ha.announce(dev)
        await ha.announce(dev)  # a reconnect: no second warning, still no link
        blocks = _device_block(dev)
        check(blocks and not [b for b in blocks if "cu" in b], (url, blocks))
    dev = _boot({"pins": {"lamp": {"pin": 5}},
                 "ha": {"url": "http://bridge.lan:8080/", "prefix": "home/+", "status_topic": "ha/#"}})
    check(dev.config["ha"] == {"url": "http://bridge.lan:8080/"}, dev.config["ha"])
    text = "\n".join(dev.logged)  # a wildcard in a topic: the broker would drop the device at every connect
    check("ha.prefix left out" in text and "ha.status_topic left out" in text and "ha.url" not in text, text)
    await ha.announce(dev)
    check(all(b["cu"] == "http://bridge.lan:8080/#/device/t1" for b in _device_block(dev)), _device_block(dev))
