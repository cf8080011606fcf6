# Device configuration from config.json on the flash root, checked with readable errors.
# A bad entry is reported and left out; the device still starts with what is valid.
import json

from wisp import limits

DEFAULT_PATH = "config.json"
ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"
MAX_ID_LEN = 32
SAFE_ID_LEN = 18  # the MQTT client id is wisp-<id> (app.py): 23 characters, all MQTT 3.1.1 promises (3.1.3.1)


def valid_device_id(s):
    if not isinstance(s, str) or not 1 <= len(s) <= MAX_ID_LEN:
        return False
    for ch in s:
        if ch not in ID_CHARS:
            return False
    return True


def _wrong(key, v, kind):
    if not isinstance(v, kind):
        return True
    if key == "wifi":  # the driver takes them as they are
        return not all(isinstance(v.get(k, ""), str) for k in ("ssid", "password"))
    if key == "ntp":
        return not all(isinstance(h, str) for h in ([v] if isinstance(v, str) else v))
    if kind is int:  # a budget of 0 or less would mean the default, not none
        return isinstance(v, bool) or v < 1
    return key == "signed" and isinstance(v, str) and v != "only"


def load(path=DEFAULT_PATH, log=print):
    """Return (config dict, list of error strings)."""
    errors = []
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        errors.append("no %s; using defaults" % path)
        cfg = {}
    except ValueError as e:
        errors.append("%s is not valid JSON (%s); using defaults" % (path, e))
        cfg = {}
    if not isinstance(cfg, dict):
        errors.append("%s must hold a JSON object; using defaults" % path)
        cfg = {}
    broker = cfg.get("broker")
    if not isinstance(broker, dict):
        if broker is not None:
            errors.append("broker must be an object")
        broker = {}
    port = broker.get("port", 1883)
    if not isinstance(port, int) or not 0 < port < 65536:
        errors.append("broker.port must be a number 1-65535; using 1883")
        port = 1883
    broker["port"] = port
    for key in ("host", "user", "password"):  # a number here failed every connect, for good
        if not isinstance(broker.get(key, ""), str):
            errors.append("broker.%s must be a string; left out" % key)
            del broker[key]
    broker.setdefault("host", "127.0.0.1")
    cfg["broker"] = broker
    dev_id = cfg.get("id")
    if dev_id is not None and not valid_device_id(dev_id):
        errors.append("id %r must be 1-32 of a-z 0-9 _ -; using a generated id" % (dev_id,))
        dev_id = None
    elif dev_id and len(dev_id) > SAFE_ID_LEN:  # kept: the id is the device's address (its topics)
        log("warning: id %r makes the MQTT client id 'wisp-%s', %d characters: a broker held to MQTT 3.1.1's 23 may "
            "refuse it (mosquitto, EMQX and HiveMQ take it); an id of %d or fewer fits every broker"
            % (dev_id, dev_id, len(dev_id) + 5, SAFE_ID_LEN))
    cfg["id"] = dev_id
    # seconds the firmware sleeps on: asyncio.sleep_ms() overflows past 2^29 ms (6.2 days) on
    # a 32-bit board, so every configurable interval has a bound. A watchdog under 10 s would
    # fire during a TLS handshake, which blocks an ESP32 for seconds.
    for key, default, lo, hi in (("sensor_interval_s", limits.SENSOR_INTERVAL_S, 1, limits.MAX_SENSOR_INTERVAL_S),
                                 ("wdt_s", 0, 10, limits.MAX_WDT_S)):
        v = cfg.get(key, default)
        if v != default and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
            errors.append("%s must be %d-%d seconds; using %s" % (key, lo, hi, default or "off"))
            cfg[key] = default
    # Each key's type: a wrong one is left out, so its default applies, and said, never let through
    # to fail later ("wifi": 5 raised in the Wi-Fi join: a fatal error and a reset every 10 s) or
    # to mean something else ("fast_path": "no" is true; "ntp": 123 fell back to pool.ntp.org).
    for key, kind, what in (("wifi", dict, 'an object {"ssid": ..., "password": ...}'),
                            ("ntp", (str, list), "a host, host:port, or a list of them"),
                            ("tz", str, "a POSIX TZ string"), ("fast_path", bool, "true or false"),
                            ("signed", (bool, str), 'true, false or "only"'), ("key", str, "hex"),
                            ("llm_per_hour", int, "a number above 0"), ("llm_per_day", int, "a number above 0"),
                            ("i2c", dict, "an object {scl, sda, freq}"), ("ha", dict, "an object"),
                            ("publish_allow", list, "a list of MQTT topic filters")):
        v = cfg.get(key)
        if v is not None and _wrong(key, v, kind):
            errors.append("%s must be %s; left out" % (key, what))
            del cfg[key]
    if not isinstance(cfg.get("pins", {}), dict):
        errors.append("pins must be an object of name: {pin, mode}")
        cfg["pins"] = {}
    # Pin and sensor names are parts of MQTT topics and Home Assistant ids: Home Assistant refuses
    # other characters, a + or # in a topic makes the broker drop the device at every connect, and
    # the device's own names (diagnostics, restart button, sensor chip) or a sensor's (state/<s>,
    # <s>_t and <s>_h in Home Assistant) would be two things under one topic or id.
    sensors = cfg.get("sensors")
    if not isinstance(sensors, dict):
        if sensors is not None:
            errors.append("sensors must be an object of name: {type, pin}")
        sensors = cfg["sensors"] = {}
    for kind, group in (("sensor", sensors), ("pin", cfg.get("pins", {}))):
        for name in list(group):  # sensors first: a pin may not take a (valid) sensor's names
            s = name[:-2] if name[-2:] in ("_t", "_h") and name[:-2] in sensors else name
            if not valid_device_id(name.lower()):
                err = "a name must be 1-32 of A-Z a-z 0-9 _ - (MQTT topics, Home Assistant ids)"
            elif name[:5] == "diag_" or name == "_restart" or (name == "chip" and group is sensors):
                err = "diag_*, _restart (and chip for a sensor) are the device's own names"
            elif s in sensors and group is not sensors:
                err = "the name is taken by sensor '%s' (%s, %s_t, %s_h)" % (s, s, s, s)
            else:
                continue
            errors.append("%s '%s': %s; left out" % (kind, name, err))
            del group[name]
    ha = cfg.get("ha")
    for key in ("url", "prefix", "status_topic") if isinstance(ha, dict) else ():
        # a + or # in a topic makes the broker drop the device at every connect; a device link
        # that is not a URL with a host makes Home Assistant refuse every entity of the device
        v = ha.get(key, "http://x")
        if not (isinstance(v, str) and v and "+" not in v and "#" not in v) or key == "url" and (
                not (v.startswith("http://") or v.startswith("https://")) or v.split("/")[2][:1] in ":?@ "):
            errors.append("ha.%s left out: url must be http(s)://<host>[:port], prefix and status_topic "
                          "topics without + or #" % key)
            del ha[key]
    if isinstance(ha, dict):  # "discovery": "no" meant on, "diagnostics_s": "x" or -1 meant never
        if ha.get("discovery", True) not in (True, False):
            errors.append("ha.discovery must be true or false; left out")
            del ha["discovery"]
        v = ha.get("diagnostics_s", 0)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= limits.MAX_SENSOR_INTERVAL_S:
            errors.append("ha.diagnostics_s must be 0 (off) to %d seconds; left out" % limits.MAX_SENSOR_INTERVAL_S)
            del ha["diagnostics_s"]
    for e in errors:
        log("config error: " + e)
    return cfg, errors
