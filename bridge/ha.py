"""Home Assistant MQTT discovery of the bridge itself: one connectivity binary sensor per bridge, on while its
presence topic (wisp/bridge/<name>/status) says online, so a dashboard shows whether the LLM side is up. The
payload uses Home Assistant's abbreviations as the devices' own discovery does (firmware/wisp/ha_discovery.py;
tests/e2e/ha_rules.py holds what Home Assistant accepts)."""
from __future__ import annotations

import json
import re

from bridge import protocol

DEFAULT_PREFIX = "homeassistant"


def discovery(name: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, bytes]:
    """(topic, retained payload) of the bridge's binary sensor."""
    dev_id = "wisp_bridge_" + _slug(name)
    uid = dev_id + "_status"
    config = {
        "name": "status", "uniq_id": uid, "def_ent_id": f"binary_sensor.{uid}",
        "stat_t": protocol.bridge_status(name), "val_tpl": "{{ value_json.state }}",
        "pl_on": "online", "pl_off": "offline", "dev_cla": "connectivity", "ent_cat": "diagnostic",
        "dev": {"ids": [dev_id], "name": f"wisp bridge {name}", "mf": "wisp", "mdl": "bridge"},
        "o": {"name": "wisp"},
    }
    return f"{prefix}/binary_sensor/{dev_id}/status/config", json.dumps(config).encode()


def _slug(text: str) -> str:
    """Home Assistant's entity-id form, a-z 0-9 and single underscores (firmware/wisp/ha_discovery.py slug):
    a bridge name may hold "-" and "__", which an entity id may not."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_") or "bridge"


def status_topic(prefix: str = DEFAULT_PREFIX) -> str:
    """Home Assistant's birth and last-will topic: "online" after it starts, when discovery is sent again."""
    return f"{prefix}/status"
