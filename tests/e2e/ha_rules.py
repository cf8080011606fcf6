"""What Home Assistant's MQTT integration accepts in a discovery payload, written down from its
source (homeassistant/components/mqtt: abbreviations.py, schemas.py, the per-platform schemas,
sensor/const.py, discovery.py) as of the releases that replaced `object_id` with `default_entity_id`
(2025.10; `object_id` stops working in 2026.4). check(component, payload) lists every way a
payload breaks these rules, topic_errors(topic) every way a topic does; an empty list means
Home Assistant takes it without a warning."""
import re

# Abbreviations Home Assistant expands (only those of the platforms wisp uses)
ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "bri_cmd_t": "brightness_command_topic",
    "bri_cmd_tpl": "brightness_command_template", "bri_scl": "brightness_scale",
    "bri_stat_t": "brightness_state_topic", "bri_val_tpl": "brightness_value_template",
    "cmd_t": "command_topic", "cmd_tpl": "command_template", "def_ent_id": "default_entity_id",
    "dev": "device", "dev_cla": "device_class", "e": "encoding", "en": "enabled_by_default",
    "ent_cat": "entity_category", "ent_pic": "entity_picture", "exp_aft": "expire_after",
    "frc_upd": "force_update", "ic": "icon", "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template", "max": "max", "min": "min", "mode": "mode", "name": "name",
    "o": "origin", "obj_id": "object_id", "off_dly": "off_delay", "on_cmd_type": "on_command_type",
    "opt": "optimistic", "p": "platform", "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off", "pl_on": "payload_on", "pl_prs": "payload_press", "pl_rst": "payload_reset",
    "ret": "retain", "stat_cla": "state_class", "stat_off": "state_off", "stat_on": "state_on",
    "stat_t": "state_topic", "stat_val_tpl": "state_value_template", "step": "step",
    "sug_dsp_prc": "suggested_display_precision", "t": "topic", "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {"cns": "connections", "cu": "configuration_url", "hw": "hw_version", "ids": "identifiers",
                        "mdl": "model", "mdl_id": "model_id", "mf": "manufacturer", "name": "name",
                        "sa": "suggested_area", "sn": "serial_number", "sw": "sw_version", "via_device": "via_device"}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}
AVAILABILITY_ITEM = {"topic", "value_template", "payload_available", "payload_not_available"}
DEPRECATED = {"object_id": "default_entity_id"}

# MQTT_ENTITY_COMMON_SCHEMA with the availability schemas
COMMON = {"availability", "availability_mode", "availability_topic", "availability_template", "payload_available",
          "payload_not_available", "device", "origin", "enabled_by_default", "entity_category", "entity_picture",
          "icon", "json_attributes_topic", "json_attributes_template", "default_entity_id", "object_id",
          "unique_id", "name", "encoding", "qos", "platform"}
PLATFORMS = {
    "switch": ({"command_topic"}, {"state_topic", "payload_on", "payload_off", "state_on", "state_off",
                                   "value_template", "optimistic", "retain", "device_class", "command_template"}),
    "light": ({"command_topic"}, {"state_topic", "state_value_template", "brightness_command_topic",
                                  "brightness_command_template", "brightness_scale", "brightness_state_topic",
                                  "brightness_value_template", "on_command_type", "payload_on", "payload_off",
                                  "optimistic", "retain", "schema"}),
    "binary_sensor": ({"state_topic"}, {"device_class", "expire_after", "force_update", "off_delay", "payload_on",
                                        "payload_off", "value_template"}),
    "sensor": ({"state_topic"}, {"device_class", "unit_of_measurement", "state_class", "expire_after",
                                 "force_update", "value_template", "suggested_display_precision", "options",
                                 "last_reset_value_template"}),
    "number": ({"command_topic"}, {"state_topic", "command_template", "min", "max", "step", "mode",
                                   "unit_of_measurement", "device_class", "optimistic", "payload_reset", "retain",
                                   "value_template"}),
    "button": ({"command_topic"}, {"command_template", "payload_press", "device_class", "retain"}),
}
ENUMS = {
    "entity_category": {"config", "diagnostic"},
    "availability_mode": {"all", "any", "latest"},
    "on_command_type": {"first", "last", "brightness"},
    "mode": {"auto", "box", "slider"},
    "state_class": {"measurement", "measurement_angle", "total", "total_increasing"},
}
BUTTON_CLASSES = {"identify", "restart", "update"}
BINARY_SENSOR_CLASSES = set(
    "battery battery_charging carbon_monoxide cold connectivity door garage_door gas heat light lock moisture motion "
    "moving occupancy opening plug power presence problem running safety smoke sound tamper update vibration "
    "window".split())
# sensor device classes wisp uses: the units and state classes Home Assistant accepts for each
SENSOR_CLASSES = {
    "temperature": ({"°C", "°F", "K"}, {"measurement"}),
    "humidity": ({"%"}, {"measurement"}),
    "signal_strength": ({"dB", "dBm"}, {"measurement"}),
    "duration": ({"d", "h", "min", "s", "ms", "µs"}, ENUMS["state_class"]),
    "data_size": ({"bit", "kbit", "Mbit", "B", "kB", "MB", "KiB", "MiB"}, ENUMS["state_class"]),
    "voltage": ({"V", "mV", "µV", "kV", "MV"}, {"measurement"}),
}
# discovery.py TOPIC_MATCHER: what follows `<prefix>/` in a discovery topic; any other topic
# is ignored with "Received message on illegal discovery topic"
DISCOVERY_TOPIC = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
TOPIC_LEVEL = re.compile(r"[a-zA-Z0-9_-]+")  # the same characters, for the device's own topics
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")  # homeassistant.core
URL = re.compile(r"^(https?://[^\s/]+(/\S*)?|homeassistant://\S+)$")


def expand(payload: dict, table: dict) -> tuple[dict, list[str]]:
    out, errors = {}, []
    for key, value in payload.items():
        full = table.get(key, key)
        if key not in table and key not in table.values():
            errors.append(f"unknown key {key!r}")
        out[full] = value
    return out, errors


def check(component: str, payload: dict) -> list[str]:
    """Every rule `payload` (as published, abbreviated) breaks for `component`."""
    if component not in PLATFORMS:
        return [f"platform {component!r} is not one wisp should publish"]
    cfg, errors = expand(payload, ABBREVIATIONS)
    required, optional = PLATFORMS[component]
    errors += [f"missing {k}" for k in required - cfg.keys()]
    errors += [f"{k} is not a {component} option" for k in cfg.keys() - COMMON - required - optional]
    errors += [f"{k} is deprecated: use {v}" for k, v in DEPRECATED.items() if k in cfg]
    for key, allowed in ENUMS.items():
        if key in cfg and cfg[key] not in allowed:
            errors.append(f"{key}={cfg[key]!r} not one of {sorted(allowed)}")
    if "availability_topic" in cfg and "availability" in cfg:
        errors.append("availability_topic and availability are exclusive")
    for item in cfg.get("availability", []):
        full, errs = expand(item, ABBREVIATIONS)
        errors += [f"availability: {e}" for e in errs]
        errors += [f"availability: {k} not allowed" for k in full.keys() - AVAILABILITY_ITEM]
        if "topic" not in full:
            errors.append("availability: missing topic")
    if not isinstance(cfg.get("name"), (str, type(None))):
        errors.append("name must be text or null")
    ent = cfg.get("default_entity_id")
    if ent is not None and (not ENTITY_ID.match(ent) or not ent.startswith(component + ".")):
        errors.append(f"default_entity_id {ent!r} is not a valid {component}.<object id>")
    if "expire_after" in cfg and not (isinstance(cfg["expire_after"], int) and cfg["expire_after"] > 0):
        errors.append("expire_after must be a positive integer (seconds)")
    errors += _device_class(component, cfg)
    errors += _device(cfg.get("device"))
    if "origin" in cfg:
        origin, errs = expand(cfg["origin"], ORIGIN_ABBREVIATIONS)
        errors += [f"origin: {e}" for e in errs] + ([] if origin.get("name") else ["origin: name required"])
    return errors


def topic_errors(topic: str, prefix: str = "homeassistant") -> list[str]:
    """Every way a topic the device publishes or names for Home Assistant breaks its rules: a
    discovery topic (under `prefix`) is `<prefix>/<component>/[<node_id>/]<object_id>/config` with
    ids of [a-zA-Z0-9_-]; the device's own (state/, set/, avail/...) keep to the same characters,
    and a `+` or `#` in a topic it publishes makes the broker drop it."""
    errors = [f"wildcard in {topic!r}"] if "+" in topic or "#" in topic else []
    if topic.startswith(prefix + "/"):
        m = DISCOVERY_TOPIC.fullmatch(topic[len(prefix) + 1:])
        if not m:
            errors.append(f"illegal discovery topic {topic!r}")
        elif m["component"] not in PLATFORMS:
            errors.append(f"platform {m['component']!r} in {topic!r} is not one wisp should publish")
    else:
        errors += [f"level {level!r} of {topic!r} is not [a-zA-Z0-9_-]+" for level in topic.split("/")
                   if not TOPIC_LEVEL.fullmatch(level)]
    return errors


def config_topics(payload: dict) -> list[str]:
    """The topics a discovery payload names: state, command, brightness and availability."""
    out = [v for k, v in payload.items() if k.endswith("_t") and isinstance(v, str)]
    return out + [item["t"] for item in payload.get("avty", []) if "t" in item]


def _device_class(component: str, cfg: dict) -> list[str]:
    cls = cfg.get("device_class")
    if component == "button" and cls is not None and cls not in BUTTON_CLASSES:
        return [f"button device_class {cls!r}"]
    if component == "binary_sensor" and cls is not None and cls not in BINARY_SENSOR_CLASSES:
        return [f"binary_sensor device_class {cls!r}"]
    if component != "sensor" or cls is None:
        return []
    if cls not in SENSOR_CLASSES:
        return [f"sensor device_class {cls!r} unknown to these rules"]
    units, state_classes = SENSOR_CLASSES[cls]
    errors = []
    if cfg.get("unit_of_measurement") not in units:
        errors.append(f"unit {cfg.get('unit_of_measurement')!r} not valid for {cls}")
    if "state_class" in cfg and cfg["state_class"] not in state_classes:
        errors.append(f"state_class {cfg['state_class']!r} not valid for {cls}")
    return errors


def _device(dev) -> list[str]:
    if dev is None:
        return []
    full, errors = expand(dev, DEVICE_ABBREVIATIONS)
    errors = [f"device: {e}" for e in errors]
    if not full.get("identifiers") and not full.get("connections"):
        errors.append("device: needs identifiers or connections")
    for conn in full.get("connections", []):
        if not (isinstance(conn, list) and len(conn) == 2 and all(isinstance(x, str) for x in conn)):
            errors.append(f"device: connection {conn!r} is not a [type, value] pair")
    for key in ("manufacturer", "model", "name", "hw_version", "serial_number", "sw_version"):
        if key in full and not isinstance(full[key], str):
            errors.append(f"device: {key} must be text")
    if "configuration_url" in full and not URL.match(full["configuration_url"]):
        errors.append(f"device: configuration_url {full['configuration_url']!r} is not a URL")
    return errors
