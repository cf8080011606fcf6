"""What a user sees when something is wrong: one line saying what happened and an exit code
(2: a mistake in the command, 3: no broker answer), never a traceback."""
import http.server
import json
import subprocess
import sys
import threading

import pytest

from tools import broker as brokers
from tools import repl, romfs, shortnames
from tools.cli import main as wisp
from tools.paths import FIRMWARE, REPO


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


# What a maker gets wrong, run as the real command: one line on stderr, an exit status, nothing half-written.

def wisp_cli(*argv, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, argv)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO, env=cli_env())


def cli_env(**extra):
    import os
    return dict(os.environ, PYTHONPATH=str(REPO), **extra)


def assert_one_line(done, code, text):
    assert done.returncode == code, (done.returncode, done.stderr)
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert text in done.stderr, done.stderr


def test_a_cmd_argument_that_is_broken_json_is_refused_naming_it(closed_port):
    """steps=[{...} with a bracket missing went out as a string, and the device said "'steps' must be a list":
    true, but the user's mistake is in the JSON, and only the host can still say where."""
    done = wisp_cli("cmd", "dev1", "routine_define", "name=night",
                    'steps=[{"tool": "gpio_write", "args": {"pin": "fan", "value": 1}}', "--broker", closed_port)
    assert_one_line(done, 2, "tool argument 'steps' starts like JSON but is not valid JSON (Expecting ',' delimiter")
    assert "quote it to send text" in done.stderr
    done = wisp_cli("cmd", "dev1", "memory_set", "key=note", "value=[draft] call Bob", "--broker", closed_port)
    assert done.returncode == 3 and "JSON" not in done.stderr  # plain text that starts with [ is sent as text


def test_a_cmd_argument_given_twice_is_refused_not_guessed(closed_port):
    """`wisp cmd dev1 gpio_write pin=fan value=1 value=0` sent value=0: a guess at what was meant, on an actuator."""
    done = wisp_cli("cmd", "dev1", "gpio_write", "pin=fan", "value=1", "value=0", "--broker", closed_port)
    assert_one_line(done, 2, "tool argument 'value' is given twice; give it once")


def test_a_device_id_no_device_can_have_is_refused_before_the_broker(closed_port):
    # '#' and '+' would be MQTT wildcards (paho raised in its thread), capitals and spaces never match a device
    for argv in (["ask", "dev#", "hi"], ["logs", "dev+x"], ["cmd", "DEV1", "gpio_read"], ["ask", "Dev 1", "hi"],
                 ["ota", "a/b"]):
        done = wisp_cli(*argv, "--broker", closed_port)
        assert_one_line(done, 2, f"device id {argv[1]!r} must be 1-32 characters of a-z 0-9 _ -")


def test_ask_with_a_timeout_of_years_waits_and_ctrl_c_ends_it_in_one_line(tmp_path):
    import signal
    import time

    import paho.mqtt.publish as publish
    broker = brokers.start_mosquitto(tmp_path / "mq")
    try:
        publish.single("wisp/dev1/status", '{"v":1,"state":"online"}', retain=True, hostname="127.0.0.1",
                       port=broker.port)
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "ask", "dev1", "hi", "--timeout", "1e10",
                                 "--broker", f"127.0.0.1:{broker.port}"], cwd=REPO, env=cli_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(3)                  # connected, the status seen, the ask sent: waiting for the reply
        assert proc.poll() is None, proc.communicate()   # was an OverflowError traceback at once
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 130 and err.strip() == "wisp: interrupted" and out == "", (proc.returncode, err)
    finally:
        broker.stop()


def test_config_json_from_a_windows_editor_is_read_and_goes_on_the_board_as_utf8(tmp_path):
    from littlefs import LittleFS

    from tools.boards import BLOCK_SIZE
    config = {"id": "winbox", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}
    text = json.dumps(config, indent=1).replace("\n", "\r\n")
    for name, data in (("bom", b"\xef\xbb\xbf" + text.encode()), ("utf16", text.encode("utf-16"))):
        (tmp_path / f"{name}.json").write_bytes(data)
        done = wisp_cli("image", "--config", tmp_path / f"{name}.json", "-o", tmp_path / f"{name}.img", "--no-verify")
        assert done.returncode == 0, done.stderr
        raw = (tmp_path / f"{name}.img").read_bytes()
        fs = LittleFS(block_size=BLOCK_SIZE, block_count=len(raw) // BLOCK_SIZE, mount=False)
        fs.context.buffer = bytearray(raw)
        fs.mount()
        with fs.open("config.json", "rb") as f:
            on_board = f.read()
        assert on_board.startswith(b"{") and json.loads(on_board.decode("utf-8")) == config
    (tmp_path / "latin.json").write_bytes(text.replace("winbox", "winb\xf6x").encode("latin-1"))
    done = wisp_cli("image", "--config", tmp_path / "latin.json", "-o", tmp_path / "latin.img", "--no-verify")
    assert_one_line(done, 2, f"--config {tmp_path / 'latin.json'} is not UTF-8 text")
    assert not (tmp_path / "latin.img").exists()
    (tmp_path / "deep.json").write_text("[" * 100_000)   # a runaway generator's output, say
    done = wisp_cli("image", "--config", tmp_path / "deep.json", "-o", tmp_path / "deep.img", "--no-verify")
    assert_one_line(done, 2, f"--config {tmp_path / 'deep.json'} is not valid JSON: JSON nested too deeply")


def test_provision_reads_a_config_json_the_user_saved_with_a_bom(tmp_path, closed_port):
    fleet = tmp_path / "fleet"
    assert wisp_cli("provision", "porch", "--fleet", fleet, "--broker", closed_port).returncode == 0
    path = fleet / "devices" / "porch" / "config.json"
    config = json.loads(path.read_text())
    config["ntp"] = "192.168.1.1"                                 # the user's own key, added in Notepad
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(config).replace(",", ",\r\n").encode())
    done = wisp_cli("provision", "porch", "--fleet", fleet, "--broker", closed_port)
    assert done.returncode == 0, done.stderr
    assert json.loads(path.read_text())["ntp"] == "192.168.1.1"    # kept, and the file is plain UTF-8 again


def test_an_output_path_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path):
    config = tmp_path / "dev.json"
    config.write_text(json.dumps({"id": "dev", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}))
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    done = wisp_cli("image", "--config", config, "-o", tmp_path / "adir", "--no-verify")
    assert_one_line(done, 2, f"cannot write {tmp_path / 'adir'}: Is a directory")
    done = wisp_cli("image", "--config", config, "-o", tmp_path / "afile" / "x.img", "--no-verify")
    assert_one_line(done, 2, "a part of that path is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == before         # no .adir.tmp with the secrets in it
    assert not any((tmp_path / "adir").iterdir()) and (tmp_path / "afile").read_text() == "mine"
    done = wisp_cli("sim", "--state-dir", tmp_path / "afile", "--broker", "127.0.0.1:1")
    assert_one_line(done, 2, "Not a directory")


def test_a_cut_short_firmware_is_refused(tmp_path):
    from tests.tools.espimage import micropython_bin
    config = tmp_path / "dev.json"
    config.write_text(json.dumps({"id": "dev", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}))
    whole = micropython_bin("esp32", "1.26+")
    for name, data in (("half.bin", whole[:0x10000 - 0x1000 + 100]), ("ten.bin", whole[:10])):
        (tmp_path / name).write_bytes(data)
        done = wisp_cli("flash", "--port", "/dev/ttyUSB9", "--firmware", tmp_path / name, "--config", config,
                        "--dry-run", cwd=tmp_path)
        assert_one_line(done, 2, f"{tmp_path / name} is cut short")
    assert not (tmp_path / "build").exists()


def test_a_port_that_is_a_directory_or_a_file_is_named_as_such(tmp_path):
    from tests.tools.espimage import micropython_bin
    (tmp_path / "fw.bin").write_bytes(micropython_bin("esp32", "1.26+"))
    config = tmp_path / "dev.json"
    config.write_text(json.dumps({"id": "dev", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}))
    done = wisp_cli("flash", "--port", tmp_path, "--firmware", tmp_path / "fw.bin", "--config", config, cwd=tmp_path)
    assert_one_line(done, 2, f"{tmp_path} is a directory, not a serial port")
    done = wisp_cli("repl", "--port", tmp_path / "fw.bin", "--exec", "print(1)")
    assert_one_line(done, 2, f"{tmp_path / 'fw.bin'} is a file, not a serial port")


def test_repl_exec_reports_the_port_failure_not_the_soft_reset_after_it(monkeypatch, capsys):
    failed = subprocess.CompletedProcess([], 1, "", "mpremote: failed to access /dev/ttyUSB9\n")
    monkeypatch.setattr(repl.subprocess, "run", lambda *a, **k: failed)
    monkeypatch.setattr(repl, "check_port", lambda port: None)

    def reset_fails(port):
        raise repl.ConsoleError(f"could not soft-reset the board on {port}")
    monkeypatch.setattr(repl, "soft_reset", reset_fails)
    assert wisp(["repl", "--port", "/dev/ttyUSB9", "--exec", "print(1)"]) == 2
    assert "mpremote on /dev/ttyUSB9 failed: mpremote: failed to access" in one_line(capsys)


def test_an_esptool_older_than_5_is_named_with_the_fix(tmp_path, monkeypatch, capsys):
    import esptool

    from tests.tools.espimage import micropython_bin
    (tmp_path / "fw.bin").write_bytes(micropython_bin("esp32", "1.26+"))
    monkeypatch.setattr(esptool, "__version__", "4.8.1")     # `write-flash` is "invalid choice" there
    assert wisp(["flash", "--port", "/dev/ttyUSB9", "--firmware", str(tmp_path / "fw.bin"), "--config", "x.json",
                 "--dry-run", "--image", str(tmp_path / "fw.bin")]) == 2
    assert "needs esptool 5.0 or later" in one_line(capsys)


def test_ota_timeout_and_flash_baud_are_checked_by_the_parser(capsys):
    for argv, text in ((["ota", "dev1", "--timeout", "0"], "argument --timeout: must be more than 0 seconds"),
                       (["ota", "dev1", "--timeout", "nan"], "argument --timeout: must be more than 0 seconds"),
                       (["flash", "--firmware", "fw.bin", "--baud", "0", "--dry-run"], "argument --baud: must be")):
        with pytest.raises(SystemExit) as exit_:
            wisp(argv)
        assert exit_.value.code == 2 and text in capsys.readouterr().err, argv


def test_an_ipv6_broker_in_brackets_is_understood(capsys):
    port = brokers.free_port()
    assert wisp(["devices", "--broker", f"[::1]:{port}"]) == 3   # parsed; nothing listens there
    err = one_line(capsys)
    assert err.startswith(f"wisp: cannot reach the broker at [::1]:{port}: "), err
    assert "not known" not in err                                # "[::1]" was looked up as a name
    assert wisp(["devices", "--broker", "[::1"]) == 2
    assert "IPv6 address goes in brackets" in one_line(capsys)


def test_deploy_to_a_port_where_nothing_answers_gives_up_in_words(monkeypatch, capsys, tmp_path):
    # a real serial-like port (a PTY) with nothing behind it: mpremote alone waits for good
    import os

    from tools import deploy
    monkeypatch.setattr(deploy, "FIRST_CONTACT_S", 3)
    master, slave = os.openpty()
    port = os.ttyname(slave)
    config = tmp_path / "dev.json"
    config.write_text(json.dumps({"id": "dev", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}))
    try:
        assert wisp(["deploy", "--port", port, "--config", str(config)]) == 2
    finally:
        os.close(master)
        os.close(slave)
    assert one_line(capsys).startswith(f"wisp: nothing answered on {port} within 3 s: is a board running MicroPython")


def test_a_fleet_folder_that_holds_no_fleet_or_a_broken_one_is_named(closed_port, capsys, tmp_path):
    typo = tmp_path / "flete"
    for argv in (["devices"], ["logs", "dev1"], ["ask", "dev1", "hi"], ["cmd", "dev1", "gpio_read"]):
        assert wisp([*argv, "--fleet", str(typo)]) == 2, argv      # not an anonymous try at some other broker
        assert f"--fleet {typo} holds no provisioned fleet (no secrets.json)" in one_line(capsys)
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "dev1", "--fleet", str(fleet), "--broker", closed_port]) == 0
    capsys.readouterr()
    (fleet / "secrets.json").write_text('{"admin": {')              # cut short: a copy that stopped halfway
    for argv in (["devices", "--fleet", str(fleet)], ["devices", "--broker", closed_port, "--fleet", str(fleet)]):
        assert wisp(argv) == 2, argv                                # not silently anonymous
        assert f"{fleet / 'secrets.json'}" in one_line(capsys)


def test_a_listing_piped_into_a_reader_that_stops_early_ends_quietly(own_broker):
    """`wisp devices | head -1`: the reader closing the pipe is not an error worth a line on the terminal."""
    import os

    from tests.support import Probe
    probe = Probe(own_broker.host, own_broker.port)
    try:
        for n in range(3):
            probe.publish(f"wisp/pipe{n}/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        r, w = os.pipe()
        os.close(r)  # the reader has gone before the first line is written
        try:
            done = subprocess.run([sys.executable, "-m", "tools.cli", "devices", "--broker",
                                   f"{own_broker.host}:{own_broker.port}"], stdin=subprocess.DEVNULL, stdout=w,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60)
        finally:
            os.close(w)
    finally:
        probe.close()
    assert done.stderr == "" and done.returncode == 141, (done.returncode, done.stderr)  # 128 + SIGPIPE, as a shell
