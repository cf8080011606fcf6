# A board whose time.time() counts from 2000 (the ESP32 port, as MicroPython builds it): signed
# commands carry Unix time, and the device must compare them with Unix time too. The clock is
# swapped before any wisp module imports `time`, so the firmware runs on it throughout.
import sys
import time as real_time

_SHIFT = 946684800  # seconds from 1970-01-01 to 2000-01-01


class _Epoch2000:
    pass


clock = _Epoch2000()
for _name in dir(real_time):
    if not _name.startswith("__"):
        setattr(clock, _name, getattr(real_time, _name))
clock.time = lambda: real_time.time() - _SHIFT
clock.gmtime = lambda t=None: real_time.gmtime(None if t is None else t + _SHIFT)
sys.modules["time"] = clock

import asyncio  # noqa: E402
import json  # noqa: E402

from fakeboard import make_device  # noqa: E402

from wisp import sign  # noqa: E402
from wisp.commands import Commands  # noqa: E402
from wisp.device import _signing  # noqa: E402

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


async def test_a_fresh_signed_command_runs_on_a_board_counting_from_2000():
    import time
    if time.gmtime(0)[0] != 2000:
        raise Exception("the test clock does not count from 2000")
    dev = make_device()
    dev.config["key"] = KEY_HEX
    dev.key, dev.signed = _signing(dev.config)
    unix_now = int(real_time.time())
    cmds = Commands(dev)
    for i, ts in enumerate((unix_now, unix_now - _SHIFT)):  # the sender's Unix time; a 2000-based one
        cmds.on_cmd(sign.sign(dev.key, json.dumps({"v": 1, "id": "e%d" % i, "tool": "gpio_write",
                                                   "args": {"pin": "fan", "value": 1 - i}, "ts": ts}).encode()))
        for _ in range(5000):  # up to ~5 s on a busy machine; done as soon as it happens
            if len(dev.link.on("wisp/t1/cmd/res")) > i:
                break
            await asyncio.sleep_ms(1)
    res = dev.link.on("wisp/t1/cmd/res")
    if not res[0]["ok"] or dev.board.levels[18] != 1:
        raise Exception("a current command was refused: %r" % res[0])
    if res[1]["ok"] or "current Unix time" not in res[1]["result"]:
        raise Exception("a 2000-based ts was taken for now: %r" % res[1])
