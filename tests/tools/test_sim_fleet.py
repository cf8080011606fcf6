"""`wisp sim --count N`: N virtual devices on one broker; Ctrl-C (SIGINT) stops them all."""
import json
import signal
import subprocess
import sys

from tests.support import Probe
from tests.terminal import Terminal
from tools.cli import main as wisp


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


def test_ctrl_c_in_its_terminal_stops_the_devices_without_them_offering_a_repl(tmp_path, own_broker):
    """Typed Ctrl-C reaches the terminal's whole foreground job. The devices run as processes of
    their own, stopped by `wisp sim`: interrupted themselves, each would print its serial console's
    advice (Ctrl-D, r.resume()) where no console is."""
    probe = Probe(own_broker.host, own_broker.port)
    term = Terminal([sys.executable, "-m", "tools.cli", "sim", "--count", "2", "--broker",
                     f"{own_broker.host}:{own_broker.port}", "--state-dir", str(tmp_path / "devices")])
    try:
        for n in (1, 2):
            probe.wait_for(f"wisp/dev{n}/status", lambda p: p.get("state") == "online", timeout=10)
        term.read_until("online as dev2")
        term.type("\x03")
        assert term.wait() == 0
        out = term.read_for(0)
        assert "wisp: stopping" in out and "stopped by user" not in out and "r.resume()" not in out, out
        for n in (1, 2):
            probe.wait_for(f"wisp/dev{n}/status", lambda p: p.get("state") == "offline", timeout=10)
    finally:
        term.close()
        probe.close()


def test_count_and_id_do_not_mix(capsys):
    assert wisp(["sim", "--count", "2", "--id", "x"]) == 2
    assert wisp(["sim", "--count", "0"]) == 2
    assert "--count" in capsys.readouterr().err


def _sim(own_broker, tmp_path, *args, state="devices"):
    return subprocess.Popen([sys.executable, "-m", "tools.cli", "sim", *args, "--broker",
                             f"{own_broker.host}:{own_broker.port}", "--state-dir", str(tmp_path / state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_one_device_takes_a_pins_file_and_its_state_dir_and_sigterm_stops_it(tmp_path, own_broker):
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"pump": {"pin": 25, "mode": "out"}, "level": {"pin": 34, "mode": "in"}}))
    probe = Probe(own_broker.host, own_broker.port)
    proc = _sim(own_broker, tmp_path, "--id", "pumper", "--pins", str(pins))
    try:
        probe.wait_for("wisp/pumper/status", lambda p: p.get("state") == "online", timeout=15)
        manifest = probe.wait_for("wisp/pumper/manifest", timeout=10)
        assert {n: p["mode"] for n, p in manifest["pins"].items()} == {"pump": "out", "level": "in"}
        assert json.loads((tmp_path / "devices" / "pumper" / "config.json").read_text())["pins"]["pump"]["pin"] == 25
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        probe.wait_for("wisp/pumper/status", lambda p: p.get("state") == "offline", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        probe.close()


def test_a_second_device_with_the_same_id_is_refused(tmp_path, own_broker):
    probe = Probe(own_broker.host, own_broker.port)
    first = _sim(own_broker, tmp_path, "--id", "twin")
    try:
        probe.wait_for("wisp/twin/status", lambda p: p.get("state") == "online", timeout=15)
        same_root = _sim(own_broker, tmp_path, "--id", "twin")
        # 1, as `wisp run` answers for its device already running: the command was right, the moment not
        assert same_root.wait(30) == 1 and "'twin' is already running" in same_root.stdout.read()
        other_root = _sim(own_broker, tmp_path, "--count", "1", "--id", "twin", state="elsewhere")
        assert other_root.wait(30) == 2          # --count and --id do not mix
        other_root = _sim(own_broker, tmp_path, "--id", "twin", state="elsewhere")
        assert other_root.wait(30) == 1 and "'twin' is already online" in other_root.stdout.read()
        assert first.poll() is None              # the first one was never knocked off
    finally:
        first.terminate()
        first.wait(10)
        probe.close()


def test_a_device_that_reboots_comes_back_and_the_others_run_on(tmp_path, own_broker):
    """A reboot (the restart button, system_reboot, a reset after a fatal error) ends the unix port's
    process with the firmware's reset status; `wisp sim` starts that device again, as a board boots,
    instead of stopping every device of the run."""
    probe = Probe(own_broker.host, own_broker.port)
    proc = _sim(own_broker, tmp_path, "--count", "2")
    try:
        for n in (1, 2):
            probe.wait_for(f"wisp/dev{n}/status", lambda p: p.get("state") == "online", timeout=15)
        probe.publish("wisp/dev1/cmd", {"v": 1, "id": "r1", "tool": "system_reboot", "args": {"confirm": "reboot"}})
        assert probe.wait_for("wisp/dev1/cmd/res", timeout=10)["ok"] is True
        probe.wait_for("wisp/dev1/status", lambda p: p.get("state") == "offline", timeout=15)
        back = probe.wait_for("wisp/dev1/status", lambda p: p.get("state") == "online" and p.get("boots") == 2,
                              timeout=20)
        assert back["boots"] == 2
        assert proc.poll() is None, proc.stdout.read()
        probe.publish("wisp/dev2/cmd", {"v": 1, "id": "c1", "tool": "gpio_read", "args": {"pin": "door"}})
        assert probe.wait_for("wisp/dev2/cmd/res", timeout=10)["ok"] is True
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "dev1" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        probe.close()
