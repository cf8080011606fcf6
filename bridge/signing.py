"""Signed instructions, bridge side: HMAC-SHA256 over the exact JSON text, appended as the
object's last key "sig" (the firmware's wisp/sign.py is the other half; docs/security.md)."""
from __future__ import annotations

import hashlib
import hmac
import json

_HEAD = b',"sig":"'
SUFFIX_LEN = len(_HEAD) + 64 + 2


def sign_text(key: bytes, text: bytes) -> bytes:
    if not text.startswith(b"{") or not text.endswith(b"}") or text == b"{}":
        raise ValueError("only a non-empty JSON object can be signed")
    mac = hmac.new(key, text, hashlib.sha256).hexdigest().encode()
    return text[:-1] + _HEAD + mac + b'"}'


def sign_message(key: bytes, msg: dict) -> bytes:
    """Serialise once, then sign those very bytes."""
    return sign_text(key, json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())


def verify(key: bytes, payload: bytes) -> bytes | None:
    if len(payload) <= SUFFIX_LEN + 2:
        return None
    cut = len(payload) - SUFFIX_LEN
    if payload[cut:cut + len(_HEAD)] != _HEAD or not payload.endswith(b'"}'):
        return None
    text = payload[:cut] + b"}"
    good = hmac.new(key, text, hashlib.sha256).hexdigest().encode()
    return text if hmac.compare_digest(good, payload[cut + len(_HEAD):-2]) else None
