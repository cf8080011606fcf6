"""The bridge signs in CPython, the device verifies in MicroPython: both halves must agree
byte for byte, and a forged, altered or unsigned message must never verify."""
import json
import os
import subprocess

from bridge.signing import request_bind, sign_message, verify
from tools.paths import micropypath, micropython_cmd

KEY = bytes(range(32))

CHECK = r"""
import sys, binascii
from wisp import sign
key = binascii.unhexlify(sys.argv[1] if len(sys.argv) > 1 else "%s")
for line in open("signed.txt", "rb").read().split(b"\n"):
    if not line:
        continue
    body = sign.verify(key, line)
    print("OK" if body is not None else "NO", body.decode() if body else "")
print("BIND", sign.bind('{"v":1,"id":"a1.0f0f0f","msgs":["déjà vu ✓"]}'.encode()))
print("SIGNED", sign.sign(key, b'{"v":1,"id":"from-device"}').decode())
""" % KEY.hex()


def test_bridge_signatures_verify_on_the_device_and_forgeries_do_not(tmp_path):
    msg = {"v": 1, "id": "a1", "round": 0, "seq": 0, "calls": [{"cid": "c", "tool": "gpio_write",
                                                                "args": {"pin": "porch_light", "value": 1}}],
           "text": "déjà vu ✓"}
    good = sign_message(KEY, msg)
    altered = good.replace(b'"value":1', b'"value":0')
    other_key = sign_message(bytes(32), msg)
    unsigned = json.dumps(msg).encode()
    (tmp_path / "signed.txt").write_bytes(b"\n".join([good, altered, other_key, unsigned, b"{}", b"x" * 80]))
    (tmp_path / "check.py").write_text(CHECK)
    out = subprocess.run([micropython_cmd(), "check.py"], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, MICROPYPATH=micropypath()), timeout=30).stdout.splitlines()
    verdicts = [line.split(" ", 1)[0] for line in out[:-2]]
    assert verdicts == ["OK", "NO", "NO", "NO", "NO", "NO"], out
    assert json.loads(out[0].split(" ", 1)[1]) == msg
    device_signed = out[-1].split(" ", 1)[1].encode()
    assert verify(KEY, device_signed) == b'{"v":1,"id":"from-device"}'
    # the request hash a signed answer carries is the same on both sides
    assert out[-2] == "BIND " + request_bind('{"v":1,"id":"a1.0f0f0f","msgs":["déjà vu ✓"]}'.encode())
