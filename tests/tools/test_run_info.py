"""Which broker the CLI talks to, and the record of the running `wisp run` (.wisp/run.json) that tells it:
a second `wisp run` refused for its device starts nothing and leaves the first run's record alone, and
a virtual device never goes to the fleet's LAN address, where it has no login."""
import json
import os
import subprocess
import sys

import pytest

from tools import broker as brokers
from tools import cli_fleet, paths, run
from tools.cli import main as wisp
from tools.paths import REPO


@pytest.fixture
def sleeper():
    """A live process that is not this one: the pid of "another" `wisp run` or simulated device."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def run_info(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    monkeypatch.setattr(paths, "RUN_INFO", path)
    monkeypatch.setattr(run, "RUN_INFO", path)
    monkeypatch.delenv("WISP_BROKER", raising=False)
    return path


def test_a_second_run_for_a_running_device_starts_nothing_and_keeps_the_first_run_s_record(tmp_path, sleeper):
    run_dir = tmp_path / "run"
    (run_dir / "devices" / "dev1").mkdir(parents=True)
    (run_dir / "devices" / "dev1" / ".sim.pid").write_text(str(sleeper))       # the first run's dev1
    first = json.dumps({"host": "127.0.0.1", "port": 1883, "devices": ["dev1"], "pid": sleeper})
    (run_dir / "run.json").write_text(first)
    with brokers.socket.socket() as taken:            # the first run's broker port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, WISP_RUN_DIR=str(run_dir))
        done = subprocess.run([sys.executable, "-m", "tools.cli", "run", "--port", str(port)], cwd=str(REPO),
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr == (f"wisp: device 'dev1' is already running (pid {sleeper}, flash root "
                           f"{run_dir / 'devices' / 'dev1'}); stop it first, or pick another --id\n")
    assert (run_dir / "run.json").read_text() == first          # `wisp devices` still finds the first run
    assert not (run_dir / "broker").exists()                     # no broker was started


def test_a_run_removes_only_its_own_record_and_puts_back_the_one_before(run_info, sleeper):
    mine = {"host": "127.0.0.1", "port": 5000, "pid": os.getpid()}
    before = {"host": "127.0.0.1", "port": 1883, "pid": sleeper}
    run_info.write_text(json.dumps(mine))
    run._forget_run(before)
    assert json.loads(run_info.read_text()) == before
    run._forget_run(None)                       # not this run's record: left alone
    assert json.loads(run_info.read_text()) == before
    run_info.write_text(json.dumps(mine))
    run._forget_run(None)
    assert not run_info.exists()


def test_the_cli_goes_to_the_running_wisp_run_first_then_the_fleet_then_loopback(run_info, tmp_path, sleeper,
                                                                                    monkeypatch):
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "porch", "--fleet", str(fleet), "--broker", "192.168.1.20:1883"]) == 0
    monkeypatch.setenv("WISP_FLEET", str(fleet))
    assert cli_fleet.resolve_broker(None) == ("192.168.1.20", 1883)          # your own mosquitto, no `wisp run`
    assert cli_fleet.sim_broker(None) == ("127.0.0.1", 1883)                 # never the fleet's: no login
    run_info.write_text(json.dumps({"host": "127.0.0.1", "port": 40000, "pid": sleeper}))
    assert cli_fleet.resolve_broker(None) == ("127.0.0.1", 40000)
    assert cli_fleet.sim_broker(None) == ("127.0.0.1", 40000)
    monkeypatch.setenv("WISP_BROKER", "10.0.0.5:1884")
    assert cli_fleet.resolve_broker(None) == cli_fleet.sim_broker(None) == ("10.0.0.5", 1884)
    assert cli_fleet.resolve_broker("10.0.0.6") == ("10.0.0.6", 1883)
    monkeypatch.delenv("WISP_BROKER")
    run_info.write_text(json.dumps({"host": "127.0.0.1", "port": 40000, "pid": 2 ** 22 + 7}))   # a dead run
    assert cli_fleet.resolve_broker(None) == ("192.168.1.20", 1883)


def test_a_virtual_device_is_not_sent_to_a_broker_that_needs_a_login(run_info, tmp_path, sleeper, capsys):
    run_info.write_text(json.dumps({"host": "127.0.0.1", "port": 40000, "pid": sleeper, "fleet": str(tmp_path)}))
    assert wisp(["sim", "--id", "z2"]) == 2
    assert "takes only the fleet's logins, and a virtual device has none" in capsys.readouterr().err


def test_provision_again_without_broker_keeps_the_fleet_s_address(run_info, tmp_path, sleeper, capsys):
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "porch", "--fleet", str(fleet), "--broker", "192.168.1.20:1883"]) == 0
    run_info.write_text(json.dumps({"host": "127.0.0.1", "port": 40000, "pid": sleeper}))   # `make run` is on
    assert wisp(["provision", "porch", "--fleet", str(fleet)]) == 0
    cfg = json.loads((fleet / "devices" / "porch" / "config.json").read_text())
    assert (cfg["broker"]["host"], cfg["broker"]["port"]) == ("192.168.1.20", 1883)
