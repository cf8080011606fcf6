"""The bridge's HTTP API while its broker is down: a command is refused at once and never sent later, and
/metrics and the device list tell a scraper and the dashboard the bridge is cut off. Real mosquitto (stopped and
started again on its port), the bridge in-process with its HTTP server, and the real firmware on the MicroPython
unix port as the device."""
import time

import pytest

from tests.bridge.apistack import ApiStack
from tests.support import Probe, until
from tools.broker import start_mosquitto

DEV = "bdown1"


@pytest.fixture
def stack(tmp_path):
    broker = start_mosquitto(tmp_path / "mosq")
    s = ApiStack(broker, DEV)
    s.broker = broker
    yield s
    s.close()
    s.broker.stop()


def porch(stack):
    status, body = stack.call("GET", f"/api/devices/{DEV}")
    assert status == 200, body
    return next(p["state"] for p in body["pins"] if p["name"] == "porch_light")


def test_a_command_while_the_broker_is_down_is_refused_and_never_runs_later(stack, tmp_path):
    """Before: the command waited in the link's outbox, the caller got 504 'no cmd/res from device' (blaming the
    device), and the porch light went on seconds after the broker came back, long after the caller gave up."""
    assert porch(stack) in (0, "0", "OFF")
    stack.broker.proc.kill()  # a crash, or the bridge's network cut: no last wills, the devices still look online
    stack.broker.proc.wait(5)
    until(lambda: not stack.bridge.bridge._link.subscribed.is_set(), 10, "the bridge to notice")
    t0 = time.monotonic()
    status, body = stack.call("POST", f"/api/devices/{DEV}/cmd",
                              {"tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}, "timeout_s": 5})
    assert status == 503 and time.monotonic() - t0 < 2, (status, body)
    assert "not connected to its broker" in body["error"]["message"] and "nothing was sent" in body["error"]["message"]
    status, body = stack.call("POST", f"/api/devices/{DEV}/pins/porch_light", {"state": "ON"})
    assert status == 503, (status, body)
    stack.broker = start_mosquitto(tmp_path / "mosq", port=stack.broker.port)
    # listening before the bridge is back (its backoff is 1 s at least): what it held back would come now
    probe = Probe(stack.broker.host, stack.broker.port, topics=(f"wisp/{DEV}/cmd", f"wisp/{DEV}/set/#"))
    try:
        until(lambda: stack.bridge.bridge._link.subscribed.is_set(), 40, "the bridge to reconnect")
        assert probe.drain(2) == []
    finally:
        probe.close()
    stack.wait_online()
    assert porch(stack) in (0, "0", "OFF")


def broker_gauge(stack):
    status, text = stack.call("GET", "/metrics")
    assert status == 200, text
    lines = [line for line in text.splitlines() if line.startswith("wisp_broker_connected ")]
    return float(lines[0].split()[1]) if lines else None


def test_metrics_say_when_the_bridge_has_lost_its_broker(stack, tmp_path):
    """A bridge without its broker answers no device, while every other series looked as usual: a scraper had
    nothing to alert on."""
    assert broker_gauge(stack) == 1 and listed_connected(stack) is True
    stack.broker.proc.kill()
    stack.broker.proc.wait(5)
    until(lambda: broker_gauge(stack) == 0, 10, "the gauge to fall")
    assert listed_connected(stack) is False  # the device list says its states are the last heard, too
    stack.broker = start_mosquitto(tmp_path / "mosq", port=stack.broker.port)
    until(lambda: broker_gauge(stack) == 1, 40, "the gauge to rise")
    assert listed_connected(stack) is True


def listed_connected(stack):
    status, body = stack.call("GET", "/api/devices")
    assert status == 200, body
    return body["broker_connected"]
