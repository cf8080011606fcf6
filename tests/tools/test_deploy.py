"""`wisp deploy` and `wisp repl` for real: mpremote over a socat PTY to `micropython -i` (tools/vdev.py)."""
import json
import os
import pty
import secrets
import select
import shutil
import subprocess
import sys
import time

import pytest

from tests.tlsutil import make_ca
from tools import vdev
from tools.cli import main as wisp
from tools.paths import FIRMWARE


@pytest.fixture
def device(tmp_path):
    """An empty board: nothing on its flash yet, a bare REPL until main.py arrives."""
    d = vdev.start(tmp_path / "flash")
    yield d
    d.stop()


def test_deploy_copies_only_changes_removes_stale_files_and_reboots_into_the_agent(device, tmp_path, broker,
                                                                                      probe, capsys):
    dev_id = "dep" + secrets.token_hex(3)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"id": dev_id, "broker": {"host": broker.host, "port": broker.port}, "pins": {}}))
    source = tmp_path / "firmware"   # a snapshot: other people may be editing firmware/ meanwhile
    shutil.copytree(FIRMWARE, source, ignore=shutil.ignore_patterns("__pycache__"))
    deploy = ["deploy", "--port", device.tty, "--config", str(cfg), "--source", str(source)]
    assert wisp(deploy) == 0
    first = capsys.readouterr().out
    assert " 0 unchanged" in first and f"soft-reset; '{dev_id}' is back online" in first
    assert "  copied   wisp/agent.mpy" in first.splitlines()
    assert (device.workdir / "wisp" / "agent.mpy").exists() and (device.workdir / "main.py").exists()
    status = probe.wait_for(f"wisp/{dev_id}/status", lambda p: p.get("state") == "online", timeout=10)
    assert status["v"] == 1   # the soft reset started main.py: the deployed agent is on the broker

    assert wisp(deploy + ["--no-reset"]) == 0
    assert "wisp: copied 0 of " in capsys.readouterr().out

    (device.workdir / "wisp" / "log.mpy").write_bytes(b"damaged")
    (device.workdir / "wisp" / "agent.py").write_text("raise ImportError('stale source shadows agent.mpy')\n")
    assert wisp(deploy + ["--no-reset"]) == 0
    out = capsys.readouterr().out
    assert "wisp: copied 1 of " in out and "removed 1 stale" in out
    assert not (device.workdir / "wisp" / "agent.py").exists()
    rc, printed = repl_exec(device.tty, "import wisp.agent, wisp.log; print('imports', 'ok')")
    assert rc == 0 and "imports ok" in printed


def test_deploy_reports_firmware_that_does_not_boot(device, tmp_path, broker, capsys):
    dev_id = "bad" + secrets.token_hex(3)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"id": dev_id, "broker": {"host": broker.host, "port": broker.port}, "pins": {}}))
    source = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "main.py").write_text("raise RuntimeError('this firmware does not boot')\n")
    started = time.monotonic()
    rc = wisp(["deploy", "--port", device.tty, "--config", str(cfg), "--source", str(source), "--wait", "5"])
    err = capsys.readouterr().err
    assert rc != 0 and f"device '{dev_id}' did not come back online" in err and "wisp repl --port" in err
    assert time.monotonic() - started < 60


def test_deploy_puts_the_ca_the_config_names_on_the_board(device, tmp_path, capsys):
    ca = make_ca(tmp_path / "ca")["ca_der"]
    cfg = tmp_path / "tls.json"
    cfg.write_text(json.dumps({"id": "tlsdep", "broker": {"host": "192.168.1.20", "port": 8883, "tls": True,
                                                          "ca": "ca.der"}, "pins": {}}))
    deploy = ["deploy", "--port", device.tty, "--config", str(cfg), "--no-reset"]
    assert wisp(deploy) == 2
    assert f"no such file {tmp_path / 'ca.der'}" in capsys.readouterr().err
    shutil.copyfile(ca, tmp_path / "ca.der")
    assert wisp(deploy) == 0
    assert "  copied   ca.der" in capsys.readouterr().out.splitlines()
    assert (device.workdir / "ca.der").read_bytes() == ca.read_bytes()
    assert wisp(deploy) == 0
    assert "wisp: copied 0 of " in capsys.readouterr().out         # hashed like the rest: not sent again


def repl_exec(port, code):
    done = subprocess.run([sys.executable, "-m", "tools.cli", "repl", "--port", port, "--exec", code],
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


def test_repl_exec_and_interactive_session(device):
    assert repl_exec(device.tty, "print(6 * 7)") == (0, "42\n")
    master, slave = pty.openpty()  # `wisp repl` wants a terminal, as a person would give it
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "repl", "--port", device.tty],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        seen = read_until(master, b"Ctrl-]", 10)
        os.write(master, b"\r")
        read_until(master, b">>> ", 10)
        os.write(master, b"1234 * 2\r")
        seen = read_until(master, b"2468", 10)
        assert b"2468" in seen
        os.write(master, b"\x1d")  # Ctrl-] leaves mpremote's REPL
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_repl_helpers_of_the_running_firmware(tmp_path, broker, probe):
    dev_id = "rpl" + secrets.token_hex(3)
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"id": dev_id, "broker": {"host": broker.host,
                                                                            "port": broker.port},
                                                   "pins": {"porch_light": {"pin": 5, "mode": "out"}}}))
    with vdev.start(flash, main=str(FIRMWARE / "main.py"), pythonpath=[FIRMWARE]) as d:
        probe.wait_for(f"wisp/{dev_id}/status", lambda p: p.get("state") == "online", timeout=10)
        rc, out = repl_exec(d.tty, "from wisp import repl as r\nr.status()")
        assert rc == 0, out
        assert f"device {dev_id}" in out and "porch_light=0(out)" in out


def test_repl_refuses_a_missing_port(capsys):
    assert wisp(["repl", "--port", "/dev/ttyUSB9"]) == 2
    assert "no serial port /dev/ttyUSB9" in capsys.readouterr().err
    assert wisp(["deploy", "--port", "/dev/ttyUSB9"]) == 2


def read_until(fd, marker, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{marker!r} not seen; got {buf[-300:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                break
    return buf


def test_console_access_turns_the_status_offline_and_leaving_restarts_the_agent(tmp_path, broker, probe):
    dev_id = "con" + secrets.token_hex(3)
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"id": dev_id, "broker": {"host": broker.host,
                                                                            "port": broker.port}, "pins": {}}))
    status = f"wisp/{dev_id}/status"
    with vdev.start(flash, main=str(FIRMWARE / "main.py"), pythonpath=[FIRMWARE]) as d:
        probe.wait_for(status, lambda p: p.get("state") == "online", timeout=10)
        done = subprocess.run([sys.executable, "-m", "tools.cli", "repl", "--port", d.tty, "--stay", "--exec",
                               "from wisp import repl as r\nr.status()\nr.run('routine_run', name='nope')"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "link down" in done.stdout                       # what r.status() says is true
        assert "TypeError" not in done.stdout and "nope" in done.stdout   # a tool's own `name` argument
        # the broker says offline at once (the link was dropped), not a keepalive (~48 s) later
        probe.wait_for(status, lambda p: p.get("state") == "offline", timeout=5)
        probe.seen.clear()
        rc, out = repl_exec(d.tty, "print('bye')")              # leaving without --stay: a soft reset
        assert rc == 0 and "bye" in out
        probe.wait_for(status, lambda p: p.get("state") == "online", timeout=15)
