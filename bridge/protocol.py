"""The words the bridge and the host tools share with devices (docs/protocol.md): topic names, the device-id
rule, the device limits the bridge mirrors, and what an input's device class means. firmware/wisp is their
source; tests/bridge/test_protocol.py fails when a copy here differs from it.
"""
from __future__ import annotations

import re

ROOT = "wisp"  # every device topic is wisp/<device id>/<kind>
EVERYTHING = ROOT + "/#"  # every device topic, as in a broker ACL
SHARED_GROUP = "$share/wisp/"  # prefix of the subscription through which bridges split llm/req between them

# Topic kinds, the part after wisp/<id>/
STATUS, MANIFEST, EVENT = "status", "manifest", "event"
LOG, LOG_GET = "log", "log/get"  # new log lines; a request for the whole log ring
ASK, REPLY = "ask", "reply"
CMD, CMD_RES = "cmd", "cmd/res"
LLM_REQ, LLM_RES = "llm/req", "llm/res"
STATE, SET = "state", "set"  # state/<name>, set/<name>
# Over-the-air updates (docs/ota.md): host -> device offer and chunks, device -> host chunk requests and state
OTA_OFFER, OTA_CHUNK, OTA_NEED, OTA_STATE = "ota/offer", "ota/chunk", "ota/need", "ota/state"

VERSION = 1  # the protocol version every payload that carries "v" names


def speaks_v1(msg: dict) -> bool:
    """Whether msg carries "v": 1. JSON true is not 1, though Python's bool compares equal to it."""
    v = msg.get("v")
    return v == VERSION and not isinstance(v, bool)


# Mirrored device limits (firmware/wisp/limits.py, and config.py for the device id)
MAX_PAYLOAD = 4096  # bytes of one MQTT payload the device reads (MAX_PAYLOAD); bigger ones are discarded unread
MAX_ASK_TEXT = 512  # characters of an ask's text (MAX_ASK_TEXT)
MAX_ID = 40  # characters of an ask id, and of the llm/req id the device derives from it (MAX_ID)
ROUND_TIMEOUT_MS = 30_000  # how long the device waits for one LLM round (ROUND_TIMEOUT_MS)
MAX_DEVICE_ID = 32  # characters of a device id (config.py MAX_ID_LEN)
DEVICE_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"  # config.py ID_CHARS
DEVICE_ID_PATTERN = "^[a-z0-9_-]{1,%d}$" % MAX_DEVICE_ID
DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
DEVICE_ID_RULE = "1-%d characters of a-z 0-9 _ -" % MAX_DEVICE_ID  # the rule in words, for error messages
# What an input pin's level means, by its Home Assistant binary_sensor device class (a pin's "device_class"
# in the manifest): (the state when it reads 1, when it reads 0). firmware/wisp/pin_setup.py DEVICE_CLASSES.
DEVICE_CLASS_STATES = {
    "battery": ("low", "normal"), "battery_charging": ("charging", "not_charging"),
    "carbon_monoxide": ("detected", "clear"), "cold": ("cold", "normal"),
    "connectivity": ("connected", "disconnected"), "door": ("open", "closed"), "garage_door": ("open", "closed"),
    "gas": ("detected", "clear"), "heat": ("hot", "normal"), "light": ("light", "dark"),
    "lock": ("unlocked", "locked"), "moisture": ("wet", "dry"), "motion": ("detected", "clear"),
    "moving": ("moving", "still"), "occupancy": ("occupied", "clear"), "opening": ("open", "closed"),
    "plug": ("plugged_in", "unplugged"), "power": ("powered", "unpowered"), "presence": ("home", "away"),
    "problem": ("problem", "ok"), "running": ("running", "not_running"), "safety": ("unsafe", "safe"),
    "smoke": ("detected", "clear"), "sound": ("detected", "clear"), "tamper": ("tampered", "clear"),
    "update": ("available", "up_to_date"), "vibration": ("detected", "clear"), "window": ("open", "closed"),
}


def unread(payload: bytes) -> str | None:
    """Why the device would not read `payload` (the bytes as published), or None. It drops a message over
    MAX_PAYLOAD unread and answers without the request's id, so a sender would wait out its timeout."""
    if len(payload) <= MAX_PAYLOAD:
        return None
    return (f"{len(payload)} bytes as sent; the device reads at most {MAX_PAYLOAD} in one message and would drop "
            "it unread")


def is_device_id(text) -> bool:
    # fullmatch: the pattern's $ also matches before a final newline, and "dev1\n" is not dev1
    return isinstance(text, str) and DEVICE_ID.fullmatch(text) is not None


def topic(device_id: str, kind: str, name: str | None = None) -> str:
    """wisp/<id>/<kind>, or wisp/<id>/<kind>/<name> for state/ and set/."""
    return f"{ROOT}/{device_id}/{kind}" if name is None else f"{ROOT}/{device_id}/{kind}/{name}"


def every_device(kind: str) -> str:
    """The subscription filter for one kind on all devices: wisp/+/<kind>."""
    return f"{ROOT}/+/{kind}"


def device_filter(device_id: str) -> str:
    """Everything of one device: wisp/<id>/#, as in a broker ACL."""
    return f"{ROOT}/{device_id}/#"


# A bridge's presence: wisp/bridge/<name>/status, retained: {"v":1,"state":"online"|"offline","name",...}
# (docs/protocol.md "Bridge presence"). So no device may be called "bridge".
BRIDGE = "bridge"
EVERY_BRIDGE = f"{ROOT}/{BRIDGE}/+/status"
BRIDGE_NAME = DEVICE_ID  # the same characters as a device id: a topic level any broker and ACL takes


def bridge_status(name: str) -> str:
    return f"{ROOT}/{BRIDGE}/{name}/status"


def parse_bridge(name: str) -> str | None:
    """The bridge name of a presence topic (wisp/bridge/<name>/status), or None for anything else."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[1] != BRIDGE or parts[3] != STATUS:
        return None
    return parts[2]


def bridge_name_from(text: str) -> str:
    """A bridge name made of `text` (a host name): lower case, other characters as "-", at most 32."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")[:MAX_DEVICE_ID].strip("-")
    return name or BRIDGE


def parse(name: str) -> tuple[str, list[str]] | None:
    """(device id, rest of the topic split at /) of a device topic, or None for anything else."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != ROOT or not DEVICE_ID.fullmatch(parts[1]):
        return None
    return parts[1], parts[2:]

# How many devices one bridge keeps state for (live view, manifests): beyond it a new id is ignored,
# so a publisher inventing ids cannot grow the bridge's memory without bound.
MAX_DEVICES = 10_000
