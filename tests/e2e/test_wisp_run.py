"""`wisp run` as a user starts it: the banner's commands work, the broker keeps its port across
restarts, an API token from the environment is the one in the token file, and a killed bridge
comes back without taking the broker and the device with it; on a machine without mosquitto it runs
all of it on the embedded amqtt broker."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.wisprun import BANNER_TIMEOUT_S, WispRun
from tests.terminal import Terminal
from tools import broker as brokers
from tools.paths import REPO


def api_get(url, token):
    req = urllib.request.Request(url + "/api/devices", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as res:
        return res.status, json.loads(res.read())


def wait_api(url, token, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return api_get(url, token)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


def banner_commands(output):
    """The shell lines the banner tells the user to type, as printed (comments dropped)."""
    text = output.rsplit("wisp is running", 1)[1]
    block = text.split("In another terminal:", 1)[1].split("Press Ctrl-C", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def run_shell(line, env, timeout_s=30):
    return subprocess.run(["bash", "-c", line], cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def check_banner_commands(run, port):
    """Every command the banner prints works as printed, and so do the README's MQTT lines."""
    lines = banner_commands(run.output())
    assert [line.split()[0] for line in lines] == [".venv/bin/wisp"] * 3 + ["mosquitto_sub", "curl"]
    for line in lines:
        if line.startswith("mosquitto_sub"):   # it follows forever: what it printed in 3 s
            done = run_shell(f"timeout 3 {line}", run.env)
            assert done.returncode == 124 and "wisp/dev1/status " in done.stdout, (line, done)
            continue
        done = run_shell(line, run.env)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        if " ask " in line:
            assert "porch light is on [device, " in done.stdout, done.stdout
        elif " cmd " in line:
            assert done.stdout.strip() in ("door=0", "door=1"), done.stdout
        elif line.startswith("curl"):
            assert "dev1" in json.loads(done.stdout)["devices"][0]["id"], done.stdout
        else:
            assert done.stdout.split()[:2] == ["DEVICE", "STATE"] and "dev1" in done.stdout
    # the README's own MQTT lines, pointed at this run's port
    pub = run_shell(f"mosquitto_pub -p {port} -t wisp/dev1/ask -m "
                    "'{\"v\":1,\"id\":\"x1\",\"text\":\"is the porch light on?\"}'", run.env)
    assert pub.returncode == 0, pub.stderr


def test_banner_commands_work_as_printed_and_the_port_is_kept_across_restarts(run_dir):
    port = brokers.free_port()
    for attempt in range(2):          # the second start finds the first run's TIME-WAIT sockets
        run = WispRun(run_dir, port)
        try:
            run.wait_for("wisp is running", times=attempt + 1)      # one log for both runs
            assert f"127.0.0.1:{port}" in run.output(), run.output()
            assert "is taken" not in run.output()
            check_banner_commands(run, port)
        finally:
            run.stop()


def test_without_mosquitto_the_embedded_broker_serves_the_whole_run(run_dir):
    # a machine where mosquitto cannot be installed (no root, no sudo): `make run` falls back to amqtt,
    # which ignores $share/, so the bridge subscribes plainly; asks through the bridge must still be answered
    port = brokers.free_port()
    run = WispRun(run_dir, port, without_mosquitto=True)
    try:
        run.wait_for("wisp is running")
        assert "using the embedded amqtt broker" in run.output(), run.output()
        check_banner_commands(run, port)
        done = run.wisp("ask", "dev1", "write me a poem about the porch light", "--json")
        reply = json.loads(done.stdout)  # no tier configured: the bridge's reply says how to give it one
        assert reply["ok"] is False and "OPENAI_API_KEY" in reply["text"], done.stdout + done.stderr
        logs = run.wisp("logs", "dev1")
        assert logs.returncode == 0 and "online as dev1" in logs.stdout, logs.stdout + logs.stderr
    finally:
        run.stop()


def children(pid):
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def terminal_run(run_dir):
    """`wisp run` in a terminal, once its device is online: (the terminal, its child processes)."""
    env = dict(os.environ, WISP_RUN_DIR=str(run_dir))
    env.pop("WISP_BROKER", None)
    term = Terminal([sys.executable, "-m", "tools.cli", "run", "--port", str(brokers.free_port())], env=env,
                    cwd=REPO)
    kids = []
    try:
        term.read_until("Press Ctrl-C to stop.", BANNER_TIMEOUT_S)
        term.read_until("[dev1] wisp: online as dev1")
        kids += children(term.proc.pid)
        assert len(kids) == 3, kids          # the broker, the bridge, the device
        yield term, kids
    finally:
        term.close()
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_in_its_terminal_stops_the_run_without_the_device_offering_a_repl(terminal_run):
    """The device runs on as a process of its own: the terminal's Ctrl-C is for `wisp run`, which
    stops it. Were the device interrupted too, it would print its serial console's advice (Ctrl-D,
    r.resume()), and there is no console here to type that into."""
    term, kids = terminal_run
    term.type("\x03")
    assert term.wait() == 0
    out = term.read_for(0)
    assert "wisp: stopping" in out, out
    assert "stopped by user" not in out and "r.resume()" not in out and "restarting" not in out, out
    assert not [pid for pid in kids if alive(pid)]


def test_closing_its_terminal_stops_the_broker_bridge_and_device(terminal_run):
    term, kids = terminal_run
    term.hang_up()
    deadline = time.monotonic() + 20
    while [pid for pid in kids if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in kids if alive(pid)], "left running after the terminal closed"


def test_a_taken_port_is_reported_with_its_owner(run_dir):
    with brokers.socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        assert not brokers.port_is_free(port)
        assert f"(pid {os.getpid()})" in brokers.port_owner(port)
        run = WispRun(run_dir, port)
        try:
            run.wait_for("wisp is running")
            assert f"port {port} is taken by" in run.output() and "wisp run --port N" in run.output()
        finally:
            run.stop()


def test_token_from_the_environment_is_written_to_the_token_file(run_dir):
    (run_dir).mkdir(parents=True)
    (run_dir / "api_token").write_text("an-old-token")
    run = WispRun(run_dir, brokers.free_port(), env={"WISP_API_TOKEN": "the-new-token"})
    try:
        run.wait_for("wisp is running")
        token_file = run_dir / "api_token"
        assert token_file.read_text() == "the-new-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert api_get(run.dashboard_url(), "the-new-token")[0] == 200
    finally:
        run.stop()


def test_a_killed_bridge_is_restarted_and_the_device_stays(run_dir):
    run = WispRun(run_dir, brokers.free_port())
    try:
        run.wait_for("wisp is running")
        token = (run_dir / "api_token").read_text().strip()
        pid = run.bridge_pid()
        assert pid, "no bridge process under `wisp run`"
        os.kill(pid, signal.SIGKILL)
        run.wait_for("bridge exited with code -9; restarting", timeout_s=10)
        assert wait_api(run.dashboard_url(), token)[0] == 200
        assert run.bridge_pid() not in (None, pid)
        assert run.proc.poll() is None, "wisp run ended with its bridge"
        ask = run.wisp("ask", "dev1", "turn off the porch light")
        assert ask.returncode == 0, (ask.stdout, ask.stderr)
    finally:
        run.stop()


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_a_dead_broker_is_started_again_on_its_port(run_dir, broker):
    run = WispRun(run_dir, brokers.free_port(), without_mosquitto=broker == "amqtt")
    try:
        run.wait_for("wisp is running")
        pid = run.child_pid(broker.encode())
        assert pid, "no broker process under `wisp run`"
        os.kill(pid, signal.SIGKILL)
        run.wait_for("broker exited with code -9; restarting", timeout_s=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the device and the bridge reconnect on their own
            ask = run.wisp("ask", "dev1", "turn off the porch light", "--timeout", "5")
            if ask.returncode == 0:
                break
        assert ask.returncode == 0, (ask.stdout, ask.stderr, run.output()[-2000:])
        assert run.child_pid(broker.encode()) not in (None, pid) and run.proc.poll() is None
    finally:
        run.stop()


def test_a_bad_config_stops_before_the_banner(run_dir, tmp_path):
    bad = tmp_path / "wisp.toml"
    bad.write_text("[tiers.premium]\nkind = 'no-such-kind'\nurl = 12\n")
    run = WispRun(run_dir, brokers.free_port(), env={"WISP_CONFIG": str(bad)})
    try:
        assert run.proc.wait(BANNER_TIMEOUT_S) == 1
        assert "wisp is running" not in run.output()
        assert "the bridge did not start" in run.output()
    finally:
        run.stop()


def test_time_wait_sockets_do_not_make_a_port_look_taken():
    with brokers.socket.socket() as srv:
        srv.setsockopt(brokers.socket.SOL_SOCKET, brokers.socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        client = brokers.socket.create_connection(("127.0.0.1", port))
        accepted, _ = srv.accept()
        accepted.close()              # the server side closes first: its end stays in TIME-WAIT
        client.close()
    assert brokers.port_is_free(port)


def test_a_port_chosen_for_a_server_is_not_one_outgoing_connections_are_given():
    # bind-to-0 ports come from the ephemeral range, and a released one goes to the next outgoing
    # connection: a broker restarted on it, or started on it by a second process, found it taken
    low, high = (int(p) for p in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    ports = {brokers.free_port() for _ in range(20)}
    assert all(brokers.PRIVATE_PORTS_FROM <= p < low for p in ports), (sorted(ports), low, high)
    assert len(ports) > 1  # chosen at random: two processes choosing at once rarely meet
    for port in ports:
        with brokers.socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free for a server that sets no SO_REUSEADDR either


def test_without_mosquitto_a_secure_run_says_it_needs_mosquitto(run_dir):
    # the embedded broker has no logins or ACL: a provisioned run on it would trust every client
    run = WispRun(run_dir, brokers.free_port(), args=("--secure",), without_mosquitto=True)
    try:
        assert run.proc.wait(60) == 1
        assert "a fleet needs mosquitto" in run.output() and "wisp is running" not in run.output(), run.output()
    finally:
        run.stop()
