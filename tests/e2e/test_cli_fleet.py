"""`wisp devices` and `wisp logs` against real mosquitto and devices on the MicroPython unix port."""
import json
import queue
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.stack import REPO, Stack
from tests.support import firmware_limit

MAX_PAYLOAD = firmware_limit("MAX_PAYLOAD")

SENSOR_PINS = {"pump": {"pin": 25, "mode": "out"}, "level": {"pin": 34, "mode": "in"}}


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        s.start_device("dev1")
        s.start_device("dev2", pins=SENSOR_PINS)
        yield s


def test_devices_lists_every_device_with_state_firmware_board_and_pins(stack):
    done = stack.wisp("devices", "--json")
    assert done.returncode == 0, done.stderr
    devices = json.loads(done.stdout)["devices"]
    assert set(devices) == {"dev1", "dev2"}
    assert devices["dev2"]["state"] == "online" and devices["dev2"]["board"] == "sim"
    assert devices["dev2"]["pins"] == {"pump": "out", "level": "in"}
    assert devices["dev1"]["pins"]["porch_light"] == "out" and devices["dev1"]["fw"]
    table = stack.wisp("devices").stdout.splitlines()
    assert table[0].split()[:3] == ["DEVICE", "STATE", "FIRMWARE"]
    assert [row.split()[0] for row in table[1:table.index("")]] == ["dev1", "dev2"]  # then the bridges


def test_devices_lists_the_bridges_with_their_state_and_tiers(stack):
    bridges = json.loads(stack.wisp("devices", "--json").stdout)["bridges"]
    assert [b["state"] for b in bridges.values()] == ["online"], bridges  # the stack's one bridge, by host name
    (name, bridge), = bridges.items()
    assert bridge["tiers"] == ["local"] and bridge["since"] > 1_700_000_000
    lines = stack.wisp("devices").stdout.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("BRIDGE")))
    assert lines[at].split() == ["BRIDGE", "STATE", "SINCE", "(UTC)", "TIERS"]
    assert lines[at + 1].split()[:2] == [name, "online"] and lines[at + 1].split()[-1] == "local"


def test_an_offline_device_is_listed_as_offline_and_logs_say_so(stack):
    stack.start_device("dev3")
    stack.devices["dev3"].kill()                 # a power cut: the broker publishes its last will
    stack.probe.wait_for("wisp/dev3/status", lambda s: isinstance(s, dict) and s.get("state") == "offline",
                         timeout=90)
    devices = json.loads(stack.wisp("devices", "--json").stdout)["devices"]
    assert devices["dev3"]["state"] == "offline"
    logs = stack.wisp("logs", "dev3")
    assert logs.returncode == 1 and "status: offline" in logs.stdout and "is offline" in logs.stdout


def test_logs_of_an_unknown_device_say_it_never_appeared(stack):
    logs = stack.wisp("logs", "nosuch")
    assert logs.returncode == 3 and "knows no device 'nosuch'" in logs.stdout


def test_logs_show_the_device_log_ring_with_times(stack):
    assert stack.wisp("ask", "dev1", "turn on the fan").returncode == 0
    logs = stack.wisp("logs", "dev1")
    assert logs.returncode == 0, logs.stdout + logs.stderr
    lines = logs.stdout.splitlines()
    assert any(" status: online" in line for line in lines)
    ring = [line for line in lines if "  log: " in line]
    assert any(f"online as dev1 on {stack.broker.host}:{stack.broker.port}" in line for line in ring), lines
    assert all(line[2] == ":" and line[5] == ":" for line in ring)      # HH:MM:SS, the clock is set


def test_logs_follow_prints_events_live(stack):
    follow = subprocess.Popen([sys.executable, "-m", "tools.cli", "logs", "dev1", "-f", "--broker", stack.broker_addr],
                              cwd=str(REPO), stdout=subprocess.PIPE, text=True)
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
        assert "status: online" in lines.get(timeout=10)
        # An oversized ask is refused by the device, which reports it as an error event.
        stack.probe.publish("wisp/dev1/ask", "x" * (MAX_PAYLOAD + 1), qos=0)
        deadline = time.monotonic() + 10
        got = []
        while not (any(" error: payload" in x for x in got) and any(" log: error: payload" in x for x in got)):
            got.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        event = next(x for x in got if " error: payload" in x and " log: " not in x)
        assert "refused: limit is %d" % MAX_PAYLOAD in event           # the device's event, live
        assert any("refused: limit is %d" % MAX_PAYLOAD in x for x in got if " log: " in x)  # its log line
    finally:
        follow.terminate()
        follow.wait(5)
