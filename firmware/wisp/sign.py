# Signed instructions: HMAC-SHA256 with the device's provisioned key over the exact JSON text
# of a message. The signature rides at the end of the same JSON object,
#     {"v":1,"id":"a1",...,"sig":"<64 hex>"}
# so the signed text is recovered byte for byte by cutting that suffix off: no
# re-serialisation, which CPython and MicroPython would not do identically. The unix port has
# no `hmac` module; HMAC is short enough to write on hashlib.sha256 (RFC 2104).
# Imported only on devices whose instructions must be signed (Device.signed).
import binascii
import hashlib

from wisp.log import log, rarely

_BLOCK = 64
_HEAD = b',"sig":"'
SUFFIX_LEN = len(_HEAD) + 64 + 2  # ,"sig":"<64 hex>"}


def key_from_hex(text):
    """The config's "key" (hex) as bytes, or None when absent or malformed."""
    if not isinstance(text, str) or len(text) < 32 or len(text) % 2:
        return None
    try:
        return binascii.unhexlify(text)
    except ValueError:
        return None


def _feed(h, msg):
    """Hash msg: bytes, or a list of str/bytes pieces (a request never joined into one buffer)."""
    for part in msg if isinstance(msg, list) else (msg,):
        h.update(part.encode() if isinstance(part, str) else part)
    return h


def hmac_sha256(key, msg):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = _feed(hashlib.sha256(bytes(b ^ 0x36 for b in key)), msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def sign(key, text):
    """text: the JSON text of a non-empty object, as bytes or as a list of pieces whose last one
    ends with its closing brace. Returns it (in the same form) with "sig" appended."""
    mac = binascii.hexlify(hmac_sha256(key, text))
    if isinstance(text, list):
        last = text[-1]
        return text[:-1] + [(last.encode() if isinstance(last, str) else last)[:-1] + _HEAD + mac + b'"}']
    return text[:-1] + _HEAD + mac + b'"}'


def bind(text):
    """What ties a signed answer to the one request it answers: the first 8 bytes of the
    request text's SHA-256, as hex (bridge/signing.py request_bind is the other half)."""
    return binascii.hexlify(_feed(hashlib.sha256(), text).digest()[:8]).decode()


def _same(a, b):
    # compare every byte, so the time taken does not tell an attacker how much was right
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


def verify(key, payload):
    """The signed JSON text without its signature, or None if unsigned or forged."""
    if not isinstance(payload, (bytes, bytearray)) or len(payload) <= SUFFIX_LEN + 2:
        return None
    cut = len(payload) - SUFFIX_LEN
    if payload[cut:cut + len(_HEAD)] != _HEAD or payload[-2:] != b'"}':
        return None
    text = bytes(payload[:cut]) + b"}"
    mac = payload[cut + len(_HEAD):-2]
    if not _same(binascii.hexlify(hmac_sha256(key, text)), mac):
        return None
    return text


def unseal(dev, payload, what):
    """An instruction payload (llm/res, cmd) of a device that requires signing: its signed JSON
    text when the signature is good, else None (refused, counted, reported). None (a payload
    too big to read) passes through for the caller to word its refusal."""
    if payload is None:
        return None
    body = verify(dev.key, payload) if dev.key is not None else None
    if body is None:
        refuse(dev, "unsigned or forged " + what)
    return body


def refuse(dev, what):
    """Count, log rarely (a forger cannot flood the log) and report an instruction not obeyed."""
    dev.refused += 1
    if rarely(dev.refused):
        log("error: %s refused (%d so far)" % (what, dev.refused))
    dev.spawn(dev.event("refused", what + " refused"), "event")
