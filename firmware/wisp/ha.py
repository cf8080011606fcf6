# Home Assistant: MQTT discovery of every named pin and sensor, the device's diagnostics and
# restart button, and `set/<name>` commands. Discovery configs are retained, built and sent one
# at a time (small heap), republished when Home Assistant announces itself online, and removed
# (empty retained payload, with the pin's retained state) when a pin leaves the config.
# Abbreviated keys keep each payload small (README, Home Assistant, lists what appears).
import json
import time

from wisp import limits, store, tools
from wisp.log import log

STORE_NAME = "ha"              # the retained topics published last time, to remove stale ones
RESTART = "_restart"           # set/_restart: the restart button (a pin of that name is shadowed)
PRESS = "reboot"               # the button's payload, the same guard word as system_reboot
ON_WORDS = ("ON", "1", "TRUE")
OFF_WORDS = ("OFF", "0", "FALSE")
_STATUS_TPL = "{{ value_json.state }}"
# diagnostics: (key in the diag payload, name, device class, unit, state class)
DIAG = (("rssi", "Wi-Fi signal", "signal_strength", "dBm", "measurement"),
        ("up", "uptime", "duration", "s", "total_increasing"),
        ("heap", "free heap", "data_size", "B", "measurement"),
        ("boots", "boot count", None, None, "total_increasing"),
        ("temp", "chip temperature", "temperature", "°C", "measurement"))


def prefix(dev):
    ha = dev.config.get("ha")
    return ha.get("prefix", "homeassistant") if isinstance(ha, dict) else "homeassistant"


def enabled(dev):
    ha = dev.config.get("ha")
    return not (isinstance(ha, dict) and ha.get("discovery") is False)


def diag_period_s(dev):
    """Seconds between diagnostics publishes, 0 for none (discovery off or `ha.diagnostics_s` 0)."""
    ha = dev.config.get("ha")
    s = ha.get("diagnostics_s", limits.DIAG_INTERVAL_S) if isinstance(ha, dict) else limits.DIAG_INTERVAL_S
    return s if enabled(dev) and isinstance(s, int) and s > 0 else 0


def slug(text):
    """Home Assistant's entity-id form: a-z 0-9 and single underscores."""
    out = ""
    for c in text.lower():
        c = c if "a" <= c <= "z" or "0" <= c <= "9" else "_"
        if c != "_" or (out and out[-1] != "_"):
            out += c
    return out.strip("_")


def _shared(dev):
    """The device and origin blocks every config carries."""
    from wisp import VERSION
    model, hw, mac = dev.board.hw_info()
    d = {"ids": ["wisp_" + dev.id], "name": "wisp " + dev.id, "mf": "wisp", "mdl": model, "hw": hw,
         "sw": VERSION, "sn": dev.board.unique_id()}
    if mac:
        d["cns"] = [["mac", mac]]
    ha = dev.config.get("ha")
    url = ha.get("url") if isinstance(ha, dict) else None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        d["cu"] = url.rstrip("/") + "/#/device/" + dev.id  # the bridge dashboard's device page
    return {"dev": d, "o": {"name": "wisp", "sw": VERSION}}


def entities(dev):
    """(component, object id, name, extra config) for everything Home Assistant should see."""
    from wisp.inputs import sample_period_s
    out, expire = [], 3 * sample_period_s(dev)  # a reading 3 samples old is none: shown unavailable
    for name in sorted(dev.pins):
        pin = dev.pins[name]
        st, cmd, label = dev.topic("state/" + name), dev.topic("set/" + name), name.replace("_", " ")
        if pin.mode == "out":
            out.append((pin.ha, name, label, {"stat_t": st, "cmd_t": cmd}))
        elif pin.mode == "in":
            extra = {"stat_t": st}
            if pin.device_class:
                extra["dev_cla"] = pin.device_class
            out.append(("binary_sensor", name, label, extra))
        elif pin.mode == "adc":
            extra = {"stat_t": st, "stat_cla": "measurement", "exp_aft": expire}
            if pin.unit:
                extra["unit_of_meas"] = pin.unit
                if pin.unit in ("V", "mV"):
                    extra["dev_cla"] = "voltage"
            out.append(("sensor", name, label, extra))
        elif pin.ha == "light":  # a dimmable light: duty percent is the brightness
            out.append(("light", name, label, {
                "stat_t": st, "stat_val_tpl": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}", "cmd_t": cmd,
                "bri_stat_t": st, "bri_cmd_t": cmd, "bri_scl": 100, "on_cmd_type": "brightness"}))
        else:
            out.append(("number", name, label, {"stat_t": st, "cmd_t": cmd, "min": 0, "max": 100,
                                                "unit_of_meas": "%", "mode": "slider"}))
    sensors = dev.config.get("sensors")
    for name in sorted(sensors) if isinstance(sensors, dict) else ():
        st, label = dev.topic("state/" + name), name.replace("_", " ")
        avty = {"avty": [{"t": dev.topic("status"), "val_tpl": _STATUS_TPL}, {"t": dev.topic("avail/" + name)}],
                "avty_mode": "all", "stat_t": st, "stat_cla": "measurement", "exp_aft": expire}
        for key, word, cls, unit in (("t", "temperature", "temperature", "°C"), ("h", "humidity", "humidity", "%")):
            extra = dict(avty, val_tpl="{{ value_json.%s }}" % key, dev_cla=cls, unit_of_meas=unit)
            out.append(("sensor", name + "_" + key, label + " " + word, extra))
    if diag_period_s(dev):
        st = dev.topic("diag")
        for key, word, cls, unit, sc in DIAG:
            extra = {"stat_t": st, "val_tpl": "{{ value_json.%s }}" % key, "ent_cat": "diagnostic", "stat_cla": sc,
                     "exp_aft": 3 * diag_period_s(dev)}
            if cls:
                extra["dev_cla"], extra["unit_of_meas"] = cls, unit
            out.append(("sensor", "diag_" + key, word, extra))
    out.append(("button", "diag_restart", "restart", {"cmd_t": dev.topic("set/" + RESTART), "pl_prs": PRESS,
                                                 "dev_cla": "restart", "ent_cat": "config"}))
    return out


def config_payload(dev, comp, obj_id, name, extra, shared):
    uid = "wisp_%s_%s" % (dev.id, obj_id)
    cfg = {"name": name, "uniq_id": uid, "def_ent_id": comp + "." + slug(uid)}
    if "avty" not in extra:
        cfg["avty_t"], cfg["avty_tpl"] = dev.topic("status"), _STATUS_TPL
    cfg.update(extra)
    cfg.update(shared)
    return json.dumps(cfg)


async def announce(dev):
    """Publish every discovery config; clear the ones (and the retained states) that left."""
    if not enabled(dev):
        return
    pre, shared = prefix(dev), _shared(dev)
    topics = []
    for comp, obj_id, name, extra in entities(dev):
        topic = "%s/%s/wisp_%s/%s/config" % (pre, comp, dev.id, obj_id)
        topics.append(topic)
        if not await dev.link.publish(topic, config_payload(dev, comp, obj_id, name, extra, shared), True, 1, 0):
            return  # link dropped: the next connect announces again
    sensors = dev.config.get("sensors")
    for name in list(dev.pins) + (list(sensors) if isinstance(sensors, dict) else []):
        topics.append(dev.topic("state/" + name))  # retained by the device: cleared when the name leaves
    for name in sensors if isinstance(sensors, dict) else ():
        topics.append(dev.topic("avail/" + name))
    before = store.load(STORE_NAME, [], log)
    for old in before if isinstance(before, list) else ():
        if isinstance(old, str) and old not in topics:
            await dev.link.publish(old, b"", True, 1, 0)  # empty retained: Home Assistant removes it
    if before != topics:
        store.save(STORE_NAME, topics)


async def on_set(dev, name, payload):
    """`set/<name>` from Home Assistant: ON/OFF/TOGGLE for outputs; 0-100, ON or OFF for PWM."""
    if name == RESTART:
        return await _restart(dev, payload)
    pin = dev.pins.get(name)
    try:
        text = payload.decode().strip().upper() if payload else ""
    except UnicodeError:  # not UTF-8: refused below like any other unknown word
        text = "?"
    if pin is None:
        result = "Error: no pin '%s'" % name
    elif pin.mode == "pwm":
        result = await _set_pwm(dev, pin, text)
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


async def _set_pwm(dev, pin, text):
    if text == "ON":  # a light turned on with no brightness: back to where it was
        duty = pin.duty or pin.bright
    elif text == "OFF":
        duty = 0
    else:
        try:
            duty = int(float(text) + 0.5)
        except ValueError:
            return "Error: set/%s wants a number 0-100, ON or OFF, got %r" % (pin.name, text[:20])
    return await tools.run(dev, "pwm_set", {"pin": pin.name, "duty_percent": duty})


async def _restart(dev, payload):
    if not payload:
        return  # the clearing below, coming back to us
    if payload != PRESS.encode():
        await dev.event("error", "restart wants the payload '%s'" % PRESS)
        return
    # A press that arrives right after a connect is a retained leftover (a button never
    # retains): obeying it would reboot at every boot. Refuse it and clear it.
    since = time.ticks_diff(time.ticks_ms(), dev.connected_ms)
    if dev.connected_n != dev.link.connects or since < limits.RESTART_GUARD_MS:
        log("restart refused: it came %d ms after connecting (a retained message?)" % since)
        await dev.event("error", "restart refused: pressed within %d ms of connecting" % limits.RESTART_GUARD_MS)
        await dev.link.publish(dev.topic("set/" + RESTART), b"", True, 1, 0)
        return
    result = await tools.run(dev, "system_reboot", {"confirm": PRESS})
    log("restart button: " + result)
