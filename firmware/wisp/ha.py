# Home Assistant: MQTT discovery of every named pin and sensor, and `set/<name>` commands.
# Discovery configs are retained, built and sent one at a time (small heap), republished when
# Home Assistant announces itself online, and removed (empty retained payload) when a pin
# leaves the config. Abbreviated keys keep each payload small.
import json

from wisp import store, tools
from wisp.log import log

STORE_NAME = "ha"              # the discovery topics published last time, to remove stale ones
ON_WORDS = ("ON", "1", "TRUE")
OFF_WORDS = ("OFF", "0", "FALSE")


def prefix(dev):
    ha = dev.config.get("ha")
    return ha.get("prefix", "homeassistant") if isinstance(ha, dict) else "homeassistant"


def enabled(dev):
    ha = dev.config.get("ha")
    return not (isinstance(ha, dict) and ha.get("discovery") is False)


def _device_block(dev):
    from wisp import VERSION
    return {"ids": ["wisp_" + dev.id], "name": "wisp " + dev.id, "mf": "wisp", "mdl": dev.board.name, "sw": VERSION}


def entities(dev):
    """(component, object id, extra config) for every pin and sensor Home Assistant should see."""
    out = []
    for name in sorted(dev.pins):
        pin = dev.pins[name]
        st = dev.topic("state/" + name)
        if pin.mode == "out":
            out.append((pin.ha, name, {"stat_t": st, "cmd_t": dev.topic("set/" + name)}))
        elif pin.mode == "in":
            out.append(("binary_sensor", name, {"stat_t": st}))
        elif pin.mode == "adc":
            out.append(("sensor", name, {"stat_t": st, "stat_cla": "measurement"}))
        elif pin.mode == "pwm":
            out.append(("number", name, {"stat_t": st, "cmd_t": dev.topic("set/" + name), "min": 0, "max": 100,
                                         "unit_of_meas": "%", "val_tpl": "{{ 100 if value == 'ON' else 0 }}"}))
    sensors = dev.config.get("sensors")
    for name in sorted(sensors) if isinstance(sensors, dict) else ():
        st = dev.topic("state/" + name)
        out.append(("sensor", name + "_t", {"stat_t": st, "val_tpl": "{{ value_json.t }}", "dev_cla": "temperature",
                                            "unit_of_meas": "°C", "stat_cla": "measurement"}))
        out.append(("sensor", name + "_h", {"stat_t": st, "val_tpl": "{{ value_json.h }}", "dev_cla": "humidity",
                                            "unit_of_meas": "%", "stat_cla": "measurement"}))
    return out


def config_payload(dev, obj_id, extra):
    uid = "wisp_%s_%s" % (dev.id, obj_id)
    cfg = {"name": obj_id.replace("_", " "), "uniq_id": uid, "obj_id": uid,
           "avty_t": dev.topic("status"), "avty_tpl": "{{ value_json.state }}", "dev": _device_block(dev)}
    cfg.update(extra)
    return json.dumps(cfg)


async def announce(dev):
    """Publish every discovery config; clear the ones whose pins left the config."""
    if not enabled(dev):
        return
    pre = prefix(dev)
    topics = []
    for comp, obj_id, extra in entities(dev):
        topic = "%s/%s/wisp_%s/%s/config" % (pre, comp, dev.id, obj_id)
        topics.append(topic)
        if not await dev.link.publish(topic, config_payload(dev, obj_id, extra), True, 1, 0):
            return  # link dropped: the next connect announces again
    before = store.load(STORE_NAME, [], log)
    for old in before if isinstance(before, list) else ():
        if isinstance(old, str) and old not in topics:
            await dev.link.publish(old, b"", True, 1, 0)  # empty retained: Home Assistant removes it
    if before != topics:
        store.save(STORE_NAME, topics)


async def on_set(dev, name, payload):
    """`set/<name>` from Home Assistant: ON/OFF/TOGGLE for outputs, 0-100 for PWM."""
    pin = dev.pins.get(name)
    try:
        text = payload.decode().strip().upper() if payload else ""
    except UnicodeError:  # not UTF-8: refused below like any other unknown word
        text = "?"
    if pin is None:
        result = "Error: no pin '%s'" % name
    elif pin.mode == "pwm":
        try:
            result = await tools.run(dev, "pwm_set", {"pin": name, "duty_percent": int(float(text))})
        except ValueError:
            result = "Error: set/%s wants a number 0-100, got %r" % (name, text[:20])
    elif text in ON_WORDS or text in OFF_WORDS:
        result = await tools.run(dev, "gpio_write", {"pin": name, "value": 1 if text in ON_WORDS else 0})
    elif text == "TOGGLE":
        result = await tools.run(dev, "gpio_toggle", {"pin": name})
    else:
        result = "Error: set/%s wants ON, OFF or TOGGLE, got %r" % (name, text[:20])
    if result.startswith("Error"):
        log("set/%s refused: %s" % (name, result))
        await dev.event("error", result)
        if pin is not None:
            await dev.pin_changed(name)  # re-assert the real state, so Home Assistant's switch flips back
