"""The documented board path, with a virtual board: `wisp provision` -> `wisp run --fleet` (the
fleet's broker: LAN listener, logins, ACL) -> the provisioned device joins -> `wisp ask`, `wisp cmd`,
`wisp devices` and `wisp logs` work with the fleet's CLI login, and anonymous clients are refused."""
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.stack import porch_responder
from tests.e2e.wisprun import WISP, WispRun
from tests.fakes.openai_server import FakeOpenAI
from tools import broker as brokers

PINS = {"porch_light": {"pin": 2, "mode": "out"}, "fan": {"pin": 4, "mode": "out"}}
ONLINE_TIMEOUT_S = 60.0


def listens_on_every_interface(port):
    """True when some socket listens on 0.0.0.0:port (what boards on the LAN need)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and local == f"00000000:{port:04X}":
            return True
    return False


@pytest.fixture
def fleet_run(tmp_path):
    fleet, port = tmp_path / "fleet", brokers.free_port()
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps(PINS))
    done = subprocess.run([WISP, "provision", "board1", "--fleet", str(fleet), "--broker", f"127.0.0.1:{port}",
                           "--pins", str(pins)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    fake = FakeOpenAI(porch_responder)
    run = WispRun(tmp_path / "run", port, args=["--fleet", str(fleet), "--id", "board1"],
                  env={"WISP_LOCAL_URL": fake.start_in_thread(), "WISP_LOCAL_MODEL": "fake-model"})
    try:
        run.wait_for("wisp is running")
        yield run, fleet
    finally:
        run.stop()
        fake.stop()


def wait_online(run, dev_id):
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while time.monotonic() < deadline:
        done = run.wisp("devices", "--json")
        if done.returncode == 0 and json.loads(done.stdout)["devices"].get(dev_id, {}).get("state") == "online":
            return
        time.sleep(0.5)
    raise AssertionError(f"{dev_id} never came online:\n{run.output()[-3000:]}")


def test_a_provisioned_board_answers_through_the_fleet_broker(fleet_run):
    run, fleet = fleet_run
    assert listens_on_every_interface(run.port)
    wait_online(run, "board1")
    fast = run.wisp("ask", "board1", "turn on the fan", "--json")
    assert fast.returncode == 0 and json.loads(fast.stdout)["text"] == "fan is on", fast.stdout + fast.stderr
    llm = run.wisp("ask", "board1", "it is getting dark, light up the porch please", "--json")
    reply = json.loads(llm.stdout)   # the bridge signed its answer with the board's key: the board acted
    assert reply["ok"] and reply["text"] == "The porch light is on.", llm.stdout + llm.stderr
    cmd = run.wisp("cmd", "board1", "gpio_read", "pin=porch_light")
    assert cmd.returncode == 0 and cmd.stdout.strip().endswith("1"), cmd.stdout + cmd.stderr
    logs = run.wisp("logs", "board1")
    assert logs.returncode == 0 and "status: online" in logs.stdout


def test_the_fleet_broker_refuses_anonymous_and_wrong_logins(fleet_run):
    run, _fleet = fleet_run
    anon = subprocess.run(["mosquitto_sub", "-p", str(run.port), "-t", "wisp/#", "-C", "1", "-W", "5"],
                          capture_output=True, text=True, timeout=30)
    assert anon.returncode != 0 and "not authori" in (anon.stderr + anon.stdout).lower()
    wrong = subprocess.run([WISP, "devices"], capture_output=True, text=True, timeout=30,
                           env=dict(run.env, WISP_BROKER_USER="board1", WISP_BROKER_PASSWORD="guess"))
    assert wrong.returncode == 3 and "refused the login 'board1'" in wrong.stderr, wrong.stderr


def start_board(fleet, dev_id, workdir):
    """A virtual board flashed with what `wisp provision` wrote for it (its config.json)."""
    from tools import sim
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text((fleet / "devices" / dev_id / "config.json").read_text())
    log = open(workdir / "console.log", "ab")
    proc = sim.start_device(workdir, stdout=log, stderr=log)
    log.close()
    return proc


def test_a_board_provisioned_while_the_fleet_runs_joins_and_the_bridge_serves_it(fleet_run, tmp_path):
    run, fleet = fleet_run
    wait_online(run, "board1")
    done = run.wisp("provision", "board2", "--fleet", str(fleet))      # a second board, the run going on
    assert done.returncode == 0, done.stdout + done.stderr
    board2 = start_board(fleet, "board2", tmp_path / "board2")
    try:
        wait_online(run, "board2")                                      # the broker took its new login
        llm = run.wisp("ask", "board2", "it is getting dark, light up the porch please", "--json")
        reply = json.loads(llm.stdout or "{}")                         # the bridge has its key
        assert reply.get("ok") and reply["text"] == "The porch light is on.", llm.stdout + llm.stderr
    finally:
        board2.terminate()
        board2.wait(10)


def test_after_rotate_the_cli_and_the_run_s_own_device_keep_working(fleet_run):
    run, fleet = fleet_run
    wait_online(run, "board1")
    done = run.wisp("provision", "board1", "--fleet", str(fleet), "--rotate")
    assert done.returncode == 0, done.stdout + done.stderr
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while time.monotonic() < deadline:          # the run's board1 is given its new config, as by a deploy
        cmd = run.wisp("cmd", "board1", "gpio_read", "pin=fan")        # the new admin login, the new key
        if cmd.returncode == 0:
            break
        time.sleep(0.5)
    assert cmd.returncode == 0 and cmd.stdout.strip() == "fan=0", cmd.stdout + cmd.stderr
    llm = run.wisp("ask", "board1", "it is getting dark, light up the porch please", "--json")
    reply = json.loads(llm.stdout or "{}")      # the bridge logs in with its new password, signs with the new key
    assert reply.get("ok") and reply["text"] == "The porch light is on.", llm.stdout + llm.stderr


def test_a_fleet_directory_moved_elsewhere_runs_with_its_own_files(tmp_path):
    port = brokers.free_port()
    done = subprocess.run([WISP, "provision", "board1", "--fleet", str(tmp_path / "old"), "--broker",
                           f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "old").rename(tmp_path / "moved")        # as copied to another machine, into another folder
    run = WispRun(tmp_path / "run", port, args=["--fleet", str(tmp_path / "moved"), "--id", "board1"])
    try:
        run.wait_for("wisp is running")
        wait_online(run, "board1")
        assert "Traceback" not in run.output()
    finally:
        run.stop()
