"""Signed instructions, bridge side: HMAC-SHA256 over the exact JSON text, appended as the
object's last key "sig" (the firmware's wisp/sign.py is the other half; docs/security.md)."""
from __future__ import annotations

import hashlib
import hmac
import json

from bridge import fastjson

_HEAD = b',"sig":"'
SUFFIX_LEN = len(_HEAD) + 64 + 2


def sign_text(key: bytes, text: bytes) -> bytes:
    if not text.startswith(b"{") or not text.endswith(b"}") or text == b"{}":
        raise ValueError("only a non-empty JSON object can be signed")
    mac = hmac.new(key, text, hashlib.sha256).hexdigest().encode()
    return text[:-1] + _HEAD + mac + b'"}'


def sign_message(key: bytes, msg: dict) -> bytes:
    """Serialise once, then sign those very bytes."""
    return sign_text(key, fastjson.dumps(msg))


def request_bind(text: bytes) -> str:
    """What a signed answer carries as "req": the first 8 bytes of the SHA-256 of the signed request
    text, in hex. The device accepts answers only for the exact request it sent (wisp/sign.py bind)."""
    return hashlib.sha256(text).hexdigest()[:16]


def verify(key: bytes, payload: bytes) -> bytes | None:
    if len(payload) <= SUFFIX_LEN + 2:
        return None
    cut = len(payload) - SUFFIX_LEN
    if payload[cut:cut + len(_HEAD)] != _HEAD or not payload.endswith(b'"}'):
        return None
    text = payload[:cut] + b"}"
    good = hmac.new(key, text, hashlib.sha256).hexdigest().encode()
    return text if hmac.compare_digest(good, payload[cut + len(_HEAD):-2]) else None


def load_keys(path: str | None) -> dict[str, bytes]:
    """Device keys from a `wisp provision` secrets.json ({"devices": {id: {"key": hex}}}) or a
    plain {id: hex} file. Raises ValueError with a readable message; never shows a key."""
    if not path:
        return {}
    try:
        doc = json.loads(open(path, encoding="utf-8").read())
    except OSError as e:
        raise ValueError(f"signing keys file {path}: {e.strerror}") from None
    except ValueError:
        raise ValueError(f"signing keys file {path} is not JSON") from None
    devices = doc.get("devices", doc) if isinstance(doc, dict) else None
    if not isinstance(devices, dict):
        raise ValueError(f"signing keys file {path} must map device ids to keys")
    keys = {}
    for dev, entry in devices.items():
        text = entry.get("key") if isinstance(entry, dict) else entry
        try:
            keys[dev] = bytes.fromhex(text)
        except (TypeError, ValueError):
            raise ValueError(f"signing keys file {path}: the key of device {dev!r} is not hex") from None
    return keys

