"""Signed instructions, for any message: the bridge's signature verifies on the bridge and on the
device (MicroPython), the device's on the bridge, and changing any one byte breaks it."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.signing import sign_message, sign_text, verify
from tests.props.firmware import collect, load, run_batch

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BATCH = 200  # cases per micropython run

json_scalar = (st.none() | st.booleans() | st.integers(-2**63, 2**63)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=5)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=25)
messages = st.dictionaries(st.text(max_size=12), json_value, min_size=1, max_size=8)
keys = st.binary(min_size=1, max_size=100)  # over 64 bytes HMAC hashes the key first: both paths


@PROPS
@given(keys, messages)
def test_any_message_round_trips(key, msg):
    signed = sign_message(key, msg)
    text = verify(key, signed)
    assert text is not None and json.loads(text) == msg


@PROPS
@given(keys, messages, st.data())
def test_any_single_byte_change_fails_verification(key, msg, data):
    signed = sign_message(key, msg)
    at = data.draw(st.integers(0, len(signed) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != signed[at]))
    forged = signed[:at] + bytes([new]) + signed[at + 1:]
    assert verify(key, forged) is None


@PROPS
@given(keys, keys, messages)
def test_another_key_never_verifies(key, other, msg):
    if key != other:
        assert verify(other, sign_message(key, msg)) is None


@PROPS
@given(keys, st.binary(max_size=300))
def test_arbitrary_bytes_never_verify_and_never_raise(key, payload):
    assert verify(key, payload) is None


def test_firmware_hmac_is_the_standard_one_under_cpython():
    sign = load("sign")

    @PROPS
    @given(keys, st.binary(max_size=200))
    def same(key, text):
        import hashlib
        import hmac
        assert sign.hmac_sha256(key, text) == hmac.new(key, text, hashlib.sha256).digest()
    same()


DEVICE_CHECK = r"""
import binascii, json
from wisp import sign
for line in open("cases.json"):
    c = json.loads(line)
    key = binascii.unhexlify(c["key"])
    got = sign.verify(key, binascii.unhexlify(c["payload"]))
    mine = sign.sign(key, binascii.unhexlify(c["text"]))
    print(json.dumps([None if got is None else binascii.hexlify(got).decode(),
                      binascii.hexlify(mine).decode()]))
"""


def test_the_device_agrees_with_the_bridge_on_every_generated_message(tmp_path):
    """200 generated cases, one micropython process: bridge-signed payloads (some with one byte
    changed) verify on the device exactly when they verify on the bridge, and the device's own
    signatures verify on the bridge."""
    case = st.tuples(keys, messages, st.integers(0, 10_000), st.integers(1, 255))
    drawn = collect(case, BATCH, settings(max_examples=BATCH, deadline=None, database=None))
    cases, expect = [], []
    for n, (key, msg, flip_at, xor) in enumerate(drawn):
        signed = sign_message(key, msg)
        if n % 2:  # every other case is a forgery (a generated flag could come out all one way)
            i = flip_at % len(signed)
            signed = signed[:i] + bytes([signed[i] ^ xor]) + signed[i + 1:]
        text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
        cases.append({"key": key.hex(), "payload": signed.hex(), "text": text.hex()})
        expect.append(verify(key, signed))
    out = run_batch(tmp_path, DEVICE_CHECK, cases)
    assert len(out) == len(cases)
    forged = 0
    for c, want, (got, device_signed) in zip(cases, expect, out, strict=False):
        assert got == (None if want is None else want.hex()), c
        forged += want is None
        key, text = bytes.fromhex(c["key"]), bytes.fromhex(c["text"])
        assert bytes.fromhex(device_signed) == sign_text(key, text)
    assert 0 < forged < len(cases)  # both kinds were really tried
