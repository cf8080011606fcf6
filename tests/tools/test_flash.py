"""`wisp flash`: real esptool offline commands (merge-bin, image-info), dry runs, and every refusal up to
the serial port. Firmware files are structurally real ESP images built by tests/tools/espimage.py."""
import json
import subprocess
import time

import pytest
from littlefs import LittleFS

from tests.tools.espimage import micropython_bin
from tools import boards
from tools.cli import main as wisp
from tools.paths import REPO

CONFIG = {"id": "flashdev", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `wisp flash` leaves its filesystem image in ./build
    out = {}
    for name, chip, series in (("v124", "esp32", "1.23-1.25"), ("v126", "esp32", "1.26+"),
                               ("s3", "esp32s3", "1.23-1.25")):
        out[name] = tmp_path / f"{name}.bin"
        out[name].write_bytes(micropython_bin(chip, series))
    out["config"] = tmp_path / "flashdev.json"
    out["config"].write_text(json.dumps(CONFIG))
    return out


def run(capsys, *argv):
    rc = wisp(["flash", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_dry_run_prints_exact_esptool_commands_per_release_and_chip(files, tmp_path, capsys):
    rc, out, _ = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v124"], "--config", files["config"],
                     "--dry-run", "--erase")
    assert rc == 0
    lines = [line for line in out.splitlines() if "esptool" in line]
    assert lines[0].endswith("-m esptool --chip esp32 --port /dev/ttyUSB9 erase-flash")
    assert lines[1].endswith(f"--baud 460800 write-flash 0x1000 {files['v124']} 0x200000 build/flashdev-fs.img")
    assert (tmp_path / "build/flashdev-fs.img").stat().st_size == 0x200000   # ready for the printed command
    rc, out, _ = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v126"], "--config", files["config"],
                     "--dry-run", "--flash-size", "8MB")
    assert rc == 0 and "6144 KiB at 0x200000" in out and "1.26+" in out and "erase-flash" not in out
    rc, out, _ = run(capsys, "--port", "/dev/ttyACM0", "--firmware", files["s3"], "--config", files["config"],
                     "--dry-run")
    assert rc == 0 and "--chip esp32s3" in out and "write-flash 0x0 " in out


def test_merge_makes_one_verified_factory_image(files, tmp_path, capsys):
    out_bin = tmp_path / "factory.bin"
    rc, out, err = run(capsys, "--firmware", files["v124"], "--config", files["config"], "--merge", out_bin)
    assert rc == 0, err
    assert "image-info ok" in out and "device id flashdev" in out
    data = out_bin.read_bytes()
    fw = files["v124"].read_bytes()
    assert len(data) == 4 * boards.MB
    assert data[0x1000 + 0x100:0x1000 + len(fw)] == fw[0x100:]   # esptool may patch the boot header only
    # Read the filesystem back out of the merged file on our own, too.
    fs = LittleFS(block_size=4096, block_count=0x200000 // 4096, mount=False)
    fs.context.buffer = bytearray(data[0x200000:0x400000])
    fs.mount()
    with fs.open("config.json", "r") as f:
        assert json.load(f)["id"] == "flashdev"
    assert "agent.mpy" in fs.listdir("wisp")
    assert out_bin.stat().st_mode & 0o777 == 0o600          # it holds the device's broker password and key
    assert "use it for that one board only" in out


def test_merge_and_images_default_to_the_ignored_build_folder_owner_only(files, tmp_path, capsys):
    rc, out, err = run(capsys, "--firmware", files["v124"], "--config", files["config"], "--merge")
    assert rc == 0, err
    merged = tmp_path / "build" / "flashdev-factory.bin"       # the tests run in tmp_path (see the fixture)
    assert merged.stat().st_mode & 0o777 == 0o600 and str(merged.relative_to(tmp_path)) in out
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v124"], "--config", files["config"],
                     "--dry-run")
    assert rc == 0 and (tmp_path / "build" / "flashdev-fs.img").stat().st_mode & 0o777 == 0o600
    ignored = subprocess.run(["git", "check-ignore", "-q", "build/flashdev-factory.bin"], cwd=str(REPO))
    assert ignored.returncode == 0, "build outputs must be git-ignored in the repo"


def test_clear_errors_before_any_write(files, tmp_path, capsys):
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v124"], "--config", files["config"])
    assert rc == 2 and "no such port /dev/ttyUSB9" in err
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v124"], "--config", files["config"],
                     "--chip", "esp32s3", "--dry-run")
    assert rc == 2 and "built for esp32, but the board is esp32s3" in err
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", tmp_path / "nope.bin", "--config",
                     files["config"], "--dry-run")
    assert rc == 2 and "does not exist" in err
    uf2 = tmp_path / "fw.uf2"
    uf2.write_bytes(b"UF2\nWQ]\x9e" + b"\0" * 600)
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", uf2, "--config", files["config"], "--dry-run")
    assert rc == 2 and "not an ESP firmware image (first byte 0x55, expected 0xe9)" in err
    big = tmp_path / "big.img"
    big.write_bytes(b"\xff" * (3 * boards.MB))
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v124"], "--image", big, "--dry-run")
    assert rc == 2 and "bigger than the board's 2097152-byte vfs region at 0x200000" in err


def test_a_port_with_no_board_behind_it_is_reported(files, capsys):
    start = time.monotonic()
    rc, _, err = run(capsys, "--port", "/dev/null", "--firmware", files["v124"], "--config", files["config"])
    assert rc == 2 and "no board answered on /dev/null" in err
    assert time.monotonic() - start < 15


def test_firmware_partition_table_decides_the_filesystem_region(files):
    old = boards.read_firmware(files["v124"]).layout("4MB")
    new = boards.read_firmware(files["v126"]).layout("16MB")
    assert (old.series, old.vfs_offset, old.vfs_size) == ("1.23-1.25", 0x200000, 0x200000)
    assert (new.series, new.vfs_offset, new.vfs_size) == ("1.26+", 0x200000, 0xE00000)
    with pytest.raises(boards.BoardError, match="does not fit 4MB"):
        # a v1.20-1.25 table written for 8 MB flash cannot go on a 4 MB board
        fw = boards.read_firmware(files["v124"])
        parts = fw.partitions[:-1] + (boards.Partition("vfs", 1, 0x81, 0x200000, 0x600000),)
        boards.Firmware(fw.path, fw.size, fw.chip, parts).layout("4MB")


def test_the_layout_line_reads_without_nested_parentheses(files, capsys):
    for fw in (files["v124"], files["v126"]):
        rc, out, _ = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", fw, "--config", files["config"], "--dry-run")
        line = next(x for x in out.splitlines() if x.startswith("wisp: esp32"))
        assert rc == 0 and "((" not in line and "))" not in line and "; from the firmware's partition table" in line


def test_a_config_without_wifi_is_flashed_with_a_warning_that_says_how_to_add_it(files, tmp_path, capsys):
    """`wisp provision` without WISP_WIFI_SSID still writes a config (the note says so); flashed as it is, the
    board never comes online, so flash (and image) say it where the user is looking."""
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v126"], "--config", files["config"],
                     "--dry-run")
    assert rc == 0
    assert "warning: its config has no Wi-Fi (wifi.ssid): the board will not come online" in err, err
    assert "WISP_WIFI_SSID=<network> WISP_WIFI_PASSWORD=<password> wisp provision <id>" in err, err
    with_wifi = tmp_path / "home.json"
    with_wifi.write_text(json.dumps(dict(CONFIG, wifi={"ssid": "home", "password": "secret"})))
    rc, _, err = run(capsys, "--port", "/dev/ttyUSB9", "--firmware", files["v126"], "--config", with_wifi, "--dry-run")
    assert rc == 0 and "Wi-Fi" not in err, err
