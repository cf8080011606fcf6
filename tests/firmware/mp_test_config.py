# Config and named pins: bad entries are reported and left out, reserved pins never used.
import json

from wisp import config, pins
from wisp.hal.sim import Board


def _load(text):
    with open("config.json", "w") as f:
        f.write(text)
    errors = []
    cfg, errs = config.load("config.json", errors.append)
    return cfg, errs


def test_missing_or_broken_config_falls_back_to_defaults():
    cfg, errs = config.load("nope.json", lambda m: None)
    if cfg["broker"] != {"host": "127.0.0.1", "port": 1883} or not errs:
        raise Exception((cfg, errs))
    cfg, errs = _load("{not json")
    if "not valid JSON" not in errs[0]:
        raise Exception(errs)
    cfg, errs = _load("[1,2]")
    if "JSON object" not in errs[0]:
        raise Exception(errs)


def test_bad_fields_are_reported():
    cfg, errs = _load(json.dumps({"id": "Bad Id!", "broker": {"port": 99999}, "pins": []}))
    text = " ".join(errs)
    for frag in ("id", "broker.port", "pins must be"):
        if frag not in text:
            raise Exception((frag, errs))
    if cfg["id"] is not None or cfg["broker"]["port"] != 1883:
        raise Exception(cfg)


def test_an_id_too_long_for_a_strict_broker_is_kept_with_a_warning():
    # the client id is wisp-<id>: MQTT 3.1.1 promises only 23 characters; mosquitto, EMQX and
    # HiveMQ take more, so the id is kept (its topics are the device's address) and the user told
    logged = []
    with open("config.json", "w") as f:
        json.dump({"id": "kitchen-ceiling-light-1"}, f)
    cfg, errs = config.load("config.json", logged.append)
    if cfg["id"] != "kitchen-ceiling-light-1" or errs:
        raise Exception((cfg["id"], errs))
    if logged != ["warning: id 'kitchen-ceiling-light-1' makes the MQTT client id 'wisp-kitchen-ceiling-light-1', "
                  "28 characters: a broker held to MQTT 3.1.1's 23 may refuse it (mosquitto, EMQX and HiveMQ take "
                  "it); an id of 18 or fewer fits every broker"]:
        raise Exception(logged)
    for dev_id in ("porch-light-garden", "a" * 18):  # 23 characters with wisp-: no warning
        with open("config.json", "w") as f:
            json.dump({"id": dev_id}, f)
        del logged[:]
        cfg, errs = config.load("config.json", logged.append)
        if cfg["id"] != dev_id or logged:
            raise Exception((dev_id, logged))


def test_reserved_duplicate_and_malformed_pins_are_left_out():
    logged = []
    board = Board()
    named = pins.setup({"flash": {"pin": 6, "mode": "out"}, "a": {"pin": 5}, "b": {"pin": 5},
                        "c": {"pin": 99}, "d": {"pin": 12, "mode": "sideways"}, "e": "x",
                        "f": {"pin": 13, "init": 1}}, board, logged.append)
    if sorted(named) != ["a", "f"]:
        raise Exception(sorted(named))
    text = " ".join(logged)
    for frag in ("GPIO6 is reserved", "already used", "0-39", "mode", "must be an object"):
        if frag not in text:
            raise Exception((frag, logged))
    if 6 in board.levels:
        raise Exception("reserved pin touched")
    if board.levels[5] != 0 or board.levels[13] != 1:
        raise Exception("outputs not in their safe/initial state")


def test_intervals_past_what_a_32_bit_board_can_sleep_are_refused():
    # asyncio.sleep_ms() raises OverflowError past 2^29 ms (6.2 days) on an ESP32
    cfg, errs = _load(json.dumps({"sensor_interval_s": 10 ** 6, "wdt_s": 2}))
    text = " ".join(errs)
    for frag in ("sensor_interval_s must be 1-86400 seconds; using 60", "wdt_s must be 10-3600 seconds; using off"):
        if frag not in text:
            raise Exception((frag, errs))
    if (cfg["sensor_interval_s"], cfg["wdt_s"]) != (60, 0):
        raise Exception(cfg)
    cfg, errs = _load(json.dumps({"sensor_interval_s": 86400, "wdt_s": 30}))
    if errs or (cfg["sensor_interval_s"], cfg["wdt_s"]) != (86400, 30):
        raise Exception((cfg, errs))


def test_keys_of_the_wrong_type_are_left_out_with_a_reason():
    # "wifi": 5 once raised in the Wi-Fi join (a fatal error, a reset every 10 s); "fast_path": "no"
    # was true; "ntp": 123 silently fell back to pool.ntp.org, so LAN-only TLS never connected
    bad = {"wifi": 5, "ntp": 123, "tz": 1, "fast_path": "no", "signed": 3, "key": 7, "llm_per_hour": "x",
           "llm_per_day": [], "i2c": [], "ha": "off", "publish_allow": "home/#", "sensors": 5}
    cfg, errs = _load(json.dumps(bad))
    for key in bad:
        if key in cfg and key != "sensors" or not any(e.startswith(key + " must be ") for e in errs):
            raise Exception((key, errs))
    cfg, errs = _load(json.dumps({"wifi": {"ssid": 5}, "ntp": ["192.168.1.1", 123]}))
    if "wifi" in cfg or "ntp" in cfg or len(errs) != 2:
        raise Exception((cfg, errs))
    good = {"wifi": {"ssid": "home", "password": "pw"}, "ntp": ["192.168.1.1", "pool.ntp.org"], "tz": "UTC0",
            "fast_path": False, "signed": "only", "llm_per_hour": 10, "i2c": {"scl": 22, "sda": 21},
            "ha": {"discovery": False}, "publish_allow": ["home/#"]}
    cfg, errs = _load(json.dumps(good))
    if errs or any(cfg[k] != v for k, v in good.items()):
        raise Exception((cfg, errs))


def test_values_that_quietly_meant_something_else_are_left_out():
    # a numeric broker login failed every connect for good; host 5 became 127.0.0.1 without a word;
    # "signed": "yes" meant true; a budget of 0 the default; "discovery": "no" on; diagnostics "x" never
    bad = {"broker": {"host": 5, "user": 5, "password": 1.5}, "signed": "yes", "llm_per_hour": 0,
           "llm_per_day": -3, "ha": {"discovery": "no", "diagnostics_s": -1}}
    cfg, errs = _load(json.dumps(bad))
    for frag in ("broker.host must be a string", "broker.user must be a string", "broker.password must be a string",
                 "signed must be", "llm_per_hour must be a number above 0", "llm_per_day must be a number above 0",
                 "ha.discovery must be true or false", "ha.diagnostics_s must be 0 (off) to 86400 seconds"):
        if not any(e.startswith(frag) for e in errs):
            raise Exception((frag, errs))
    if cfg["broker"] != {"host": "127.0.0.1", "port": 1883} or cfg["ha"] or "signed" in cfg or "llm_per_day" in cfg:
        raise Exception(cfg)
    cfg, errs = _load(json.dumps({"broker": {"host": "mqtt.lan", "user": "u", "password": "p"},
                                  "ha": {"discovery": True, "diagnostics_s": 0}, "signed": True}))
    if errs or cfg["broker"]["user"] != "u" or cfg["ha"] != {"discovery": True, "diagnostics_s": 0}:
        raise Exception((cfg, errs))


def test_pin_keys_for_another_mode_are_refused_with_the_reason():
    logged = []
    named = pins.setup({"relay": {"pin": 13, "pull": "up"}, "fan": {"pin": 14, "ha": "fan"},
                        "door": {"pin": 4, "mode": "in", "ha": "light"}, "lamp": {"pin": 25, "ha": "light"},
                        "dim": {"pin": 26, "mode": "pwm", "ha": "number"}, "btn": {"pin": 27, "mode": "in",
                                                                                "pull": "up"}},
                       Board(), logged.append)
    if sorted(named) != ["btn", "dim", "lamp"]:
        raise Exception((sorted(named), logged))
    text = " ".join(logged)
    for frag in ("relay", "pull is for inputs", "fan", "door", "ha must be 'light'"):
        if frag not in text:
            raise Exception((frag, logged))
