"""`wisp ota` against `wisp run --secure`, as a user tries it: the fleet's login and ACL, the device's key
from the fleet, and `wisp run` starting the simulated device again when it resets into the update."""
import time

from tests.e2e.wisprun import WispRun
from tools import broker as brokers

ONLINE_TIMEOUT_S = 60.0


def test_wisp_ota_updates_the_device_of_a_secure_run(tmp_path):
    run = WispRun(tmp_path / "run", brokers.free_port(), args=["--secure"])
    try:
        run.wait_for("wisp is running")
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        while time.monotonic() < deadline:
            status = run.wisp("ota", "dev1", "--status")
            if status.returncode == 0 and "online" in status.stdout:
                break
            time.sleep(0.5)
        assert "0.1.0" in status.stdout, status.stdout + status.stderr
        done = run.wisp("ota", "dev1", "--version", "0.1.1", "--verbose")
        assert done.returncode == 0, done.stdout + done.stderr + run.output()[-2000:]
        assert "ok   dev1: 0.1.0 -> 0.1.1" in done.stdout and "dev1: fetching" in done.stdout
        again = run.wisp("ota", "dev1", "--version", "0.1.1")
        assert again.returncode == 1 and "already running 0.1.1" in again.stdout
        status = run.wisp("ota", "dev1", "--status")
        assert "0.1.1" in status.stdout and "refused" in status.stdout  # the last offer, and why
        ask = run.wisp("ask", "dev1", "turn on the fan")
        assert ask.returncode == 0 and "fan is on" in ask.stdout, ask.stdout + ask.stderr
    finally:
        run.stop()
