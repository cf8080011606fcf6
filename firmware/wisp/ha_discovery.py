# Home Assistant MQTT discovery of every named pin and sensor, the device's diagnostics and its
# restart button. Configs are retained, built and sent one at a time (small heap), republished
# when Home Assistant announces itself online, and removed (empty retained payload, with the
# pin's retained state) when a pin leaves the config. Abbreviated keys keep each payload small;
# tests/e2e/ha_rules.py holds what Home Assistant accepts. Loaded by wisp/ha.py while it runs.
import json

from wisp import store
from wisp.ha import PRESS, RESTART, diag_period_s, enabled, prefix
from wisp.log import log

STORE_NAME = "ha"              # the retained topics published last time, to remove stale ones
_STATUS_TPL = "{{ value_json.state }}"
# diagnostics: (key in the diag payload, name, device class, unit, state class)
DIAG = (("rssi", "Wi-Fi signal", "signal_strength", "dBm", "measurement"),
        ("up", "uptime", "duration", "s", "total_increasing"),
        ("heap", "free heap", "data_size", "B", "measurement"),
        ("boots", "boot count", None, None, "total_increasing"),
        ("temp", "chip temperature", "temperature", "°C", "measurement"))


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
    if url:  # wisp/config.py keeps only an http(s)://<host> one
        d["cu"] = url.rstrip("/") + "/#/device/" + dev.id  # the bridge dashboard's device page
    return {"dev": d, "o": {"name": "wisp", "sw": VERSION}}


def entities(dev):
    """(component, object id, name, extra config) for everything Home Assistant should see, one
    at a time: only the config being sent is in the heap."""
    from wisp.inputs import sample_period_s
    expire = 3 * sample_period_s(dev)  # a reading 3 samples old is none: shown unavailable
    for name in sorted(dev.pins):
        pin = dev.pins[name]
        st, cmd, label = dev.topic("state/" + name), dev.topic("set/" + name), name.replace("_", " ")
        if pin.mode == "out":
            yield (pin.ha, name, label, {"stat_t": st, "cmd_t": cmd})
        elif pin.mode == "in":
            extra = {"stat_t": st}
            if pin.device_class:
                extra["dev_cla"] = pin.device_class
            yield ("binary_sensor", name, label, extra)
        elif pin.mode == "adc":
            extra = {"stat_t": st, "stat_cla": "measurement", "exp_aft": expire}
            if pin.unit:
                extra["unit_of_meas"] = pin.unit
                if pin.unit in ("V", "mV"):
                    extra["dev_cla"] = "voltage"
            yield ("sensor", name, label, extra)
        elif pin.ha == "light":  # a dimmable light: duty percent is the brightness
            yield ("light", name, label, {
                "stat_t": st, "stat_val_tpl": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}", "cmd_t": cmd,
                "bri_stat_t": st, "bri_cmd_t": cmd, "bri_scl": 100, "on_cmd_type": "brightness"})
        else:
            yield ("number", name, label, {"stat_t": st, "cmd_t": cmd, "min": 0, "max": 100,
                                           "unit_of_meas": "%", "mode": "slider"})
    sensors = dev.config.get("sensors")
    for name in sorted(sensors) if isinstance(sensors, dict) else ():
        st, label = dev.topic("state/" + name), name.replace("_", " ")
        avty = {"avty": [{"t": dev.topic("status"), "val_tpl": _STATUS_TPL}, {"t": dev.topic("avail/" + name)}],
                "avty_mode": "all", "stat_t": st, "stat_cla": "measurement", "exp_aft": expire}
        for key, word, cls, unit in (("t", "temperature", "temperature", "°C"), ("h", "humidity", "humidity", "%")):
            extra = dict(avty, val_tpl="{{ value_json.%s }}" % key, dev_cla=cls, unit_of_meas=unit)
            yield ("sensor", name + "_" + key, label + " " + word, extra)
    if diag_period_s(dev):
        st = dev.topic("diag")
        for key, word, cls, unit, sc in DIAG:
            extra = {"stat_t": st, "val_tpl": "{{ value_json.%s }}" % key, "ent_cat": "diagnostic", "stat_cla": sc,
                     "exp_aft": 3 * diag_period_s(dev)}
            if cls:
                extra["dev_cla"], extra["unit_of_meas"] = cls, unit
            yield ("sensor", "diag_" + key, word, extra)
    yield ("button", "diag_restart", "restart", {"cmd_t": dev.topic("set/" + RESTART), "pl_prs": PRESS,
                                                "dev_cla": "restart", "ent_cat": "config"})


def config_payload(dev, comp, obj_id, name, extra, shared):
    """The config's JSON text as a list of pieces (the entity's name and ids, its fields, each
    shared block): the MQTT client sends them one after the other, and ~600 characters whole
    would be one block, which a heap fragmented after hours of running may not have."""
    uid = "wisp_%s_%s" % (dev.id, obj_id)
    cfg = {"name": name, "uniq_id": uid, "def_ent_id": comp + "." + slug(uid)}
    if "avty" not in extra:
        cfg["avty_t"], cfg["avty_tpl"] = dev.topic("status"), _STATUS_TPL
    out = [json.dumps(cfg)[:-1], ", " + json.dumps(extra)[1:-1]]  # extra has a field or more
    for k in shared:
        out.append(', "' + k + '": ' + json.dumps(shared[k]))
    out.append("}")
    return out


def config(dev, i):
    """(topic, payload) of the i-th discovery config, or None past the last. Each is built alone:
    wisp/ha.py loads this module for one config and drops it while the broker acks."""
    for n, (comp, obj_id, name, extra) in enumerate(entities(dev)):
        if n == i:
            return (_topic(dev, comp, obj_id), config_payload(dev, comp, obj_id, name, extra, _shared(dev)))
    return None


def _topic(dev, comp, obj_id):
    return "%s/%s/wisp_%s/%s/config" % (prefix(dev), comp, dev.id, obj_id)


def topics(dev):
    """Every retained topic the device keeps for Home Assistant: configs (none with discovery
    off), pin and sensor states."""
    out = [_topic(dev, comp, obj_id) for comp, obj_id, _name, _extra in entities(dev)] if enabled(dev) else []
    sensors = dev.config.get("sensors")
    for name in list(dev.pins) + (list(sensors) if isinstance(sensors, dict) else []):
        out.append(dev.topic("state/" + name))  # retained by the device: cleared when the name leaves
    for name in sensors if isinstance(sensors, dict) else ():
        out.append(dev.topic("avail/" + name))
    return out


def stale(dev, save=False):
    """The topics published last time (ha.json) that left since, to clear. save=True, once they
    are: remember what is published now."""
    now, before = topics(dev), store.load(STORE_NAME, [], log)
    if save:
        if before != now:
            store.save(STORE_NAME, now)
        return None
    return [old for old in (before if isinstance(before, list) else ()) if isinstance(old, str) and old not in now]
