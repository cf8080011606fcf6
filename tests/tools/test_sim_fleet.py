"""`wisp sim --count N`: N virtual devices on one broker; Ctrl-C (SIGINT) stops them all."""
import signal
import subprocess
import sys

import pytest

from tests.support import Probe
from tools import broker as brokers
from tools.cli import main as wisp


@pytest.fixture
def own_broker(tmp_path):
    # A broker of its own: the ids dev1..devN are common, and retained statuses from other tests must not count.
    b = brokers.start_mosquitto(tmp_path / "mosq")
    yield b
    b.stop()


def test_count_starts_n_devices_and_ctrl_c_stops_them_all(tmp_path, own_broker):
    probe = Probe(own_broker.host, own_broker.port)
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "sim", "--count", "3", "--broker",
                             f"{own_broker.host}:{own_broker.port}", "--state-dir", str(tmp_path / "devices")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for n in (1, 2, 3):
            probe.wait_for(f"wisp/dev{n}/status", lambda p: p.get("state") == "online", timeout=10)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        for n in (1, 2, 3):   # each device's last will: its process is gone
            probe.wait_for(f"wisp/dev{n}/status", lambda p: p.get("state") == "offline", timeout=10)
        assert (tmp_path / "devices" / "dev3" / "config.json").exists()
        assert "3 device(s) running" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        probe.close()


def test_count_and_id_do_not_mix(capsys):
    assert wisp(["sim", "--count", "2", "--id", "x"]) == 2
    assert wisp(["sim", "--count", "0"]) == 2
    assert "--count" in capsys.readouterr().err
