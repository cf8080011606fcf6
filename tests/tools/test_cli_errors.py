"""What a user sees when something is wrong: one line saying what happened and an exit code
(2: a mistake in the command, 3: no broker answer), never a traceback."""
import http.server
import subprocess
import sys
import threading

import pytest

from tools import broker as brokers
from tools import repl, romfs, shortnames
from tools.cli import main as wisp
from tools.paths import FIRMWARE


def one_line(capsys):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def closed_port():
    return f"127.0.0.1:{brokers.free_port()}"        # nothing listens there


def test_an_http_port_is_not_called_a_broker_that_refused_the_login(capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        assert wisp(["devices", "--broker", f"127.0.0.1:{port}"]) == 3
        err = one_line(capsys)
        assert err.startswith(f"wisp: no MQTT answer from 127.0.0.1:{port} (not an MQTT broker, or a TLS-only")
        assert "refused" not in err
    finally:
        server.shutdown()
        server.server_close()


def test_fleet_without_a_folder_means_the_default_one_as_on_run(closed_port, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WISP_FLEET", str(tmp_path))
    for argv in (["devices", "--fleet"], ["logs", "dev1", "--fleet"], ["ask", "dev1", "hi", "--fleet"],
                 ["cmd", "dev1", "gpio_read", "--fleet"], ["ota", "--status", "--fleet"]):
        assert wisp([*argv, "--broker", closed_port]) == 3, argv      # parsed; only the broker is missing
        assert "cannot reach the broker" in one_line(capsys)


def test_ota_with_no_broker_is_one_line_and_exit_3(closed_port, capsys, tmp_path):
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "dev1", "--fleet", str(fleet), "--broker", closed_port]) == 0   # dev1's key
    capsys.readouterr()
    for argv in (["ota", "--all"], ["ota", "--status"], ["ota", "dev1"]):
        assert wisp([*argv, "--broker", closed_port, "--fleet", str(fleet)]) == 3, argv
        assert f"cannot reach the broker at {closed_port}" in one_line(capsys)


def test_sim_refuses_a_missing_pins_file_a_bad_id_and_a_bad_heap(tmp_path, closed_port, capsys):
    state = ["--state-dir", str(tmp_path), "--broker", closed_port]
    assert wisp(["sim", "--pins", str(tmp_path / "nosuch.json"), *state]) == 2
    assert "--pins " in one_line(capsys)
    assert wisp(["sim", "--id", "BAD", *state]) == 2
    assert "device id 'BAD' must be 1-32 characters of a-z 0-9 _ -" in one_line(capsys)
    for bad in ("abc", "96KB", "1K"):
        assert wisp(["sim", "--heapsize", bad, *state]) == 2
        assert f"--heapsize '{bad}' must be a size like 96K or 2M" in one_line(capsys)
    assert not any(tmp_path.iterdir())              # no device was started


def test_repl_exec_on_a_port_where_nothing_answers_is_one_line(monkeypatch, capsys):
    # what mpremote does on a serial port with no MicroPython behind it (e.g. /dev/ttyS0): its own traceback
    failed = subprocess.CompletedProcess([], 1, "", "Traceback (most recent call last):\n  File ...\n"
                                         "mpremote.transport.TransportError: could not enter raw repl\n")
    monkeypatch.setattr(repl.subprocess, "run", lambda *a, **k: failed)
    monkeypatch.setattr(repl, "soft_reset", lambda port: None)
    assert wisp(["repl", "--port", "/dev/null", "--exec", "print(1)"]) == 2
    assert one_line(capsys) == ("wisp: mpremote on /dev/null failed: mpremote.transport.TransportError: could not "
                                "enter raw repl (is a MicroPython board on it?)\n")
    # an exception of the code itself is the board's output (stdout), shown as it is
    raised = subprocess.CompletedProcess([], 1, "Traceback (most recent call last):\nZeroDivisionError\n", "")
    monkeypatch.setattr(repl.subprocess, "run", lambda *a, **k: raised)
    assert wisp(["repl", "--port", "/dev/null", "--exec", "1/0"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_repl_without_a_terminal_says_so():
    done = subprocess.run([sys.executable, "-m", "tools.cli", "repl", "--port", "/dev/null"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == ("wisp: `wisp repl` needs a terminal (its input is not one); from a script, run code "
                           "with `--exec CODE`\n")


def test_romfs_build_without_mpremote_is_one_line(tmp_path, monkeypatch, capsys):
    python = tmp_path / "python3"     # a Python without mpremote, as the system's may be
    python.write_text("#!/bin/sh\necho \"$0: No module named mpremote\" >&2\nexit 1\n")
    python.chmod(0o755)
    monkeypatch.setattr(romfs.sys, "executable", str(python))
    assert romfs.main(["build", str(tmp_path / "wisp.romfs")]) == 2
    assert "No module named mpremote (run it with the venv's Python, .venv/bin/python" in one_line(capsys)


def test_bad_numbers_and_chips_are_refused_by_the_parser(capsys):
    for argv in (["ask", "dev1", "hi", "--timeout", "-1"], ["ask", "dev1", "hi", "--timeout", "0"],
                 ["cmd", "dev1", "gpio_read", "--timeout", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            wisp(argv)
        assert exit_.value.code == 2 and "argument --timeout: must be more than 0 seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        wisp(["flash", "--firmware", "fw.bin", "--chip", "esp8266", "--dry-run"])
    assert "argument --chip: invalid choice: 'esp8266'" in capsys.readouterr().err


def test_the_name_map_says_so_when_a_module_has_no_numbered_names(capsys):
    assert shortnames.main([str(FIRMWARE / "wisp" / "mqtt.py")]) == 0
    out = capsys.readouterr().out
    assert out.strip() and ("no name shortened" in out or " _0 " in out)
