"""Configs the firmware would refuse are refused on the host first, with the firmware's own words:
by `wisp provision` (before anything is written) and by `wisp image`/`flash`/`deploy`."""
import json

from tools import configcheck
from tools.cli import main as wisp

BAD_PINS = {"flash": {"pin": 6, "mode": "out"}, "sensor_out": {"pin": 35, "mode": "out"},
            "typo": {"pin": 5, "mode": "output"}}
GOOD_PINS = {"fan": {"pin": 18, "mode": "out"}, "door": {"pin": 4, "mode": "in", "pull": "up"}}


def test_the_firmware_names_each_refused_pin():
    errors = configcheck.device_errors({"id": "x", "broker": {"host": "h", "port": 1883}, "pins": BAD_PINS})
    assert sorted(errors) == sorted([
        "pin 'flash': GPIO6 is reserved (flash bus) and can never be used",
        "pin 'sensor_out': GPIO35 is input-only and cannot be an output",
        "pin 'typo': mode must be one of out, in, pwm, adc"])
    assert configcheck.device_errors({"id": "x", "broker": {"host": "h", "port": 1883}, "pins": GOOD_PINS}) == []


def test_provision_refuses_bad_pins_and_writes_nothing(tmp_path, capsys):
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps(BAD_PINS))
    fleet = tmp_path / "fleet"
    rc = wisp(["provision", "porch", "--fleet", str(fleet), "--broker", "127.0.0.1:1883", "--pins", str(pins)])
    err = capsys.readouterr().err
    assert rc == 2 and "GPIO6 is reserved" in err and "GPIO35 is input-only" in err and "nothing was written" in err
    assert not fleet.exists()
    pins.write_text(json.dumps(GOOD_PINS))
    assert wisp(["provision", "porch", "--fleet", str(fleet), "--broker", "127.0.0.1:1883", "--pins", str(pins)]) == 0


def test_image_refuses_a_config_the_device_would_refuse(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"id": "bad", "broker": {"host": "h", "port": 1883}, "pins": BAD_PINS}))
    out = tmp_path / "bad.img"
    rc = wisp(["image", "--config", str(cfg), "--output", str(out)])
    assert rc == 2 and "mode must be one of out, in, pwm, adc" in capsys.readouterr().err
    assert not out.exists()
