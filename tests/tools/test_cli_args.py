"""Arguments docs/tools.md promises are checked before anything starts: a mistake in the command is one
line and exit 2 (argparse's usage line for a bad value), never a traceback or a device started under
another id."""
import pytest

from tools import broker as brokers
from tools import ha_core_check, run
from tools.cli import main as wisp


def refused_by_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        wisp(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, (argv, err)
    return err


def test_run_port_out_of_range_is_refused_by_the_parser(capsys, monkeypatch):
    monkeypatch.setattr(run, "run", lambda *a, **k: pytest.fail("nothing may start"))
    for bad in ("70000", "-5", "0", "abc"):
        err = refused_by_parser(["run", "--port", bad], capsys)
        assert f"argument --port: must be a port number 1-65535, not '{bad}'" in err, err


def test_run_refuses_a_device_id_no_device_can_have(capsys, monkeypatch):
    monkeypatch.setattr(run, "run", lambda *a, **k: pytest.fail("nothing may start"))
    assert wisp(["run", "--id", "BAD!"]) == 2
    err = capsys.readouterr().err
    assert err == "wisp: device id 'BAD!' must be 1-32 characters of a-z 0-9 _ -\n", err


def test_ota_stage_size_is_a_count_or_a_percentage(capsys):
    for bad in ("abc", "abc%", "10.5", "0", "0%", "150%"):
        err = refused_by_parser(["ota", "--all", "--then", bad], capsys)
        assert f"argument --then: must be a count of devices (e.g. 5) or a percentage (e.g. 25%), not '{bad}'" in err


def test_an_infinite_timeout_is_not_called_too_small(capsys):
    err = refused_by_parser(["ask", "dev1", "hi", "--timeout", "inf"], capsys)
    assert "argument --timeout: must be a finite number of seconds, not inf" in err, err


def test_ha_core_check_without_hass_starts_nothing(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(brokers, "start_mosquitto", lambda *a, **k: pytest.fail("no broker may start"))
    assert ha_core_check.main(str(tmp_path / "no-hass")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wisp: no Home Assistant `hass` at '{tmp_path / 'no-hass'}'") and len(err.splitlines()) == 1


def test_sim_count_takes_a_prefix_so_it_can_run_beside_wisp_run(capsys, monkeypatch):
    from tools import simfleet
    started = []
    monkeypatch.setattr(simfleet, "run_fleet", lambda ids, *a, **k: started.append(ids) or 0)
    assert wisp(["sim", "--count", "3", "--prefix", "sim", "--broker", "127.0.0.1:1"]) == 0
    assert started == [["sim1", "sim2", "sim3"]]
    assert wisp(["sim", "--prefix", "sim"]) == 2                      # without --count it means nothing
    assert "--prefix goes with --count" in capsys.readouterr().err
    assert wisp(["sim", "--count", "2", "--prefix", "Sim!"]) == 2     # ids no device can have
    assert "device id 'Sim!1' must be" in capsys.readouterr().err
