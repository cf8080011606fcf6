"""Configs the firmware would refuse are refused on the host first, with the firmware's own words:
by `wisp provision` (before anything is written) and by `wisp image`/`flash`/`deploy`; its warnings
are shown; the files a config names (the broker CA) come from its folder and go on the board."""
import json
import shutil

import pytest

from tests.tlsutil import make_ca
from tests.tools.espimage import micropython_bin
from tools import configcheck, image
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


def tls_config(folder, ca="ca.der"):
    """The config of docs/tools.md, "TLS on a network with no internet", in `folder`."""
    cfg = folder / "tls.json"
    cfg.write_text(json.dumps({"id": "tlsdev", "broker": {"host": "192.168.1.20", "port": 8883, "tls": True,
                                                          "ca": ca}, "pins": {}}))
    return cfg


@pytest.fixture(scope="module")
def ca_der(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("ca"))["ca_der"]


def test_the_ca_beside_the_config_goes_into_the_image(tmp_path, ca_der, capsys):
    cfg = tls_config(tmp_path)
    out = tmp_path / "fs.img"
    rc = wisp(["image", "--config", str(cfg), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"wisp: broker.ca 'ca.der': no such file {tmp_path / 'ca.der'} (the CA certificate " \
                              f"is taken from the config file's folder and copied to the board)\n"
    assert not out.exists()
    shutil.copyfile(ca_der, tmp_path / "ca.der")
    assert wisp(["image", "--config", str(cfg), "-o", str(out)]) == 0, capsys.readouterr().err
    files, dev_id = image.verify_image(out)
    assert dev_id == "tlsdev" and files["ca.der"] == ca_der.stat().st_size


def test_flash_dry_run_and_a_provisioned_device_take_the_ca_from_their_folder(tmp_path, ca_der, capsys,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)          # `wisp flash` leaves its image in ./build
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "porch", "--fleet", str(fleet), "--broker", "192.168.1.20:1883"]) == 0
    cfg_path = fleet / "devices" / "porch" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["broker"].update(port=8883, tls=True, ca="certs/ca.der")
    cfg_path.write_text(json.dumps(cfg))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(micropython_bin("esp32", "1.26+"))
    flash = ["flash", "--port", "/dev/ttyUSB9", "--firmware", str(fw), "--device", "porch", "--fleet", str(fleet),
             "--dry-run"]
    capsys.readouterr()
    assert wisp(flash) == 2
    assert f"no such file {fleet / 'devices' / 'porch' / 'certs' / 'ca.der'}" in capsys.readouterr().err
    (cfg_path.parent / "certs").mkdir()
    shutil.copyfile(ca_der, cfg_path.parent / "certs" / "ca.der")
    assert wisp(flash) == 0, capsys.readouterr().err
    files, _ = image.verify_image(tmp_path / "build" / "porch-fs.img")
    assert "certs/ca.der" in files
    # re-provisioning keeps the user's TLS keys and port, and checks them with the CA beside the config
    assert wisp(["provision", "porch", "--fleet", str(fleet), "--broker", "192.168.1.20:1883"]) == 0
    broker = json.loads(cfg_path.read_text())["broker"]
    assert (broker["port"], broker["tls"], broker["ca"]) == (8883, True, "certs/ca.der")


def test_warnings_of_the_firmware_s_check_are_shown_and_not_fatal(tmp_path, capsys):
    cfg = tmp_path / "strap.json"
    cfg.write_text(json.dumps({"id": "strap", "broker": {"host": "h", "port": 1883},
                               "pins": {"porch_light": {"pin": 5, "mode": "out"}}}))
    out = tmp_path / "fs.img"
    assert wisp(["image", "--config", str(cfg), "-o", str(out), "--no-verify"]) == 0
    err = capsys.readouterr().err
    assert f"wisp: --config {cfg}: warning: pin 'porch_light': GPIO5: strapping" in err and out.exists()


def test_provision_help_shows_a_safe_pin_and_the_acl_it_writes(capsys):
    with pytest.raises(SystemExit):
        wisp(["provision", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert '"pin": 26' in text and '"pin": 5' not in text
    assert "homeassistant/+/wisp_<id>/#" in text and "write homeassistant/#" not in text
