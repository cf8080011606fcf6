"""A device that refuses what the bridge signed because the bridge host's clock is off: the REST answer says
which clock to check, as `wisp cmd` does. The bridge in-process with its HTTP server and the device's key, its
clock shifted; the real firmware on the MicroPython unix port as the device, its clock right."""
import tempfile
import time
from pathlib import Path

import pytest

import bridge.fleet
from bridge.config import HttpConfig, Tier
from tests.bridge import apistack
from tests.bridge.harness import BridgeThread, config
from tests.fakes.openai_server import FakeOpenAI
from tools import sim

DEV = "clock1"
KEY_HEX = "5e" * 32


class _Shifted:
    """The time module, but time() is `offset_s` off."""

    def __init__(self, offset_s: float):
        self.offset_s = offset_s

    def time(self):
        return time.time() + self.offset_s

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture(scope="module")
def api(broker):
    workdir = Path(tempfile.mkdtemp(prefix="wisp-clock-"))
    fake = FakeOpenAI(apistack.porch_responder)
    thread = device = console = None
    try:
        cfg = config([Tier("local", fake.start_in_thread(), "fake-model")], workdir)
        cfg.broker_host, cfg.broker_port = broker.host, broker.port
        cfg.http = HttpConfig(host="127.0.0.1", port=0, token=apistack.TOKEN)
        cfg.signing_keys = {DEV: bytes.fromhex(KEY_HEX)}
        thread = BridgeThread(cfg).start()
        sim.write_config(workdir / "device", DEV, broker.host, broker.port, apistack.PINS, {"key": KEY_HEX})
        console = open(workdir / "device" / "console.log", "ab")
        device = sim.start_device(workdir / "device", stdout=console, stderr=console)
        stack = apistack.ApiStack.__new__(apistack.ApiStack)  # its call() and wait_online() on this bridge
        stack.base, stack.dev_id = thread.bridge.http_url[:-len("/v1")], DEV
        stack.wait_online()
        yield stack
    finally:
        if device:
            device.terminate()
            device.wait(5)
            console.close()
        if thread:
            thread.stop()
        fake.stop()


@pytest.mark.parametrize("offset_s", [-900, 300])
def test_a_command_refused_for_the_bridge_s_clock_says_to_check_it(api, monkeypatch, offset_s):
    monkeypatch.setattr(bridge.fleet, "time", _Shifted(offset_s))
    status, body = api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": "gpio_read", "args": {"pin": "door"}})
    assert status == 200 and body["ok"] is False and "must be the current Unix time" in body["result"], body
    # before: only the device's words, about a 'ts' the caller never sent
    assert "this bridge's clock" in body["note"] and "timedatectl" in body["note"], body
    status, body = api.call("POST", f"/api/devices/{DEV}/pins/porch_light", {"state": "ON"})
    assert status == 409 and "this bridge's clock" in body["error"]["message"], body


def test_a_command_signed_with_the_right_time_carries_no_note(api):
    status, body = api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": "gpio_read", "args": {"pin": "door"}})
    assert status == 200 and body["ok"] is True and body["result"] == "door=1" and "note" not in body, body
