"""`wisp image`: mpy-cross + littlefs-python, checked by mounting the image on the real MicroPython unix port."""
import json
import shutil

import pytest
from littlefs import LittleFS

from tools import boards, image
from tools.cli import main as wisp
from tools.paths import FIRMWARE

CONFIG = {"id": "imgdev", "broker": {"host": "10.0.0.2", "port": 1883}, "pins": {}}


def firmware_sources():
    """What the image must hold, derived from firmware/ now (other people keep adding modules)."""
    out = set()
    for src in FIRMWARE.rglob("*.py"):
        if "__pycache__" in src.parts:
            continue
        rel = src.relative_to(FIRMWARE).as_posix()
        out.add(rel if rel in ("boot.py", "main.py") else rel[:-3] + ".mpy")
    return out


def test_image_holds_compiled_firmware_and_config_and_mounts_on_micropython(tmp_path, capsys):
    cfg = tmp_path / "imgdev.json"
    cfg.write_text(json.dumps(CONFIG))
    out = tmp_path / "fs.img"
    assert wisp(["image", "--config", str(cfg), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    layout = boards.default_layout("1.26", "4MB")
    assert out.stat().st_size == layout.vfs_size == 0x200000
    files, dev_id = image.verify_image(out)   # mounts with VfsLfs2 and imports wisp.app from the image
    assert dev_id == "imgdev"
    board_files = firmware_sources() - {f[:-3] + ".mpy" for f in image.SIMULATOR_ONLY}
    assert board_files | {"config.json"} <= set(files)
    assert "wisp/hal/esp32.mpy" in files and not {"wisp/hal/sim.mpy", "wisp/hal/sim_bus.mpy"} & set(files)
    assert not any(f.endswith(".py") for f in files if f not in ("boot.py", "main.py"))
    fs = LittleFS(block_size=4096, block_count=layout.vfs_blocks, mount=False)
    fs.context.buffer = bytearray(out.read_bytes())
    fs.mount()
    with fs.open("wisp/agent.mpy", "rb") as f:
        assert f.read(2) == b"M\x06"            # .mpy format 6: MicroPython 1.19 and later
    assert ".mpy" in printed and "imported" in printed


def test_new_modules_are_picked_up_without_a_list(tmp_path):
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw, ignore=shutil.ignore_patterns("__pycache__"))
    (fw / "wisp" / "extra_feature.py").write_text("ANSWER = 42\n")
    stage = image.stage_firmware(tmp_path / "root", CONFIG, firmware=fw)
    assert "wisp/extra_feature.mpy" in stage.files
    out = tmp_path / "fs.img"
    image.build_image(stage.root, out, 64 * 4096 * 4)
    files, _ = image.verify_image(out, modules=("wisp.app", "wisp.extra_feature"))
    assert "wisp/extra_feature.mpy" in files
    assert stage.mpy_bytes < stage.source_bytes


def test_firmware_too_big_for_region_is_a_clear_error(tmp_path):
    stage = image.stage_firmware(tmp_path / "root", CONFIG)
    with pytest.raises(image.ImageError, match="does not fit a 64 KiB filesystem"):
        image.build_image(stage.root, tmp_path / "fs.img", 16 * 4096)


def test_syntax_error_names_the_file(tmp_path):
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw, ignore=shutil.ignore_patterns("__pycache__"))
    (fw / "wisp" / "broken.py").write_text("def f(:\n")
    with pytest.raises(image.ImageError, match="wisp/broken.py"):
        image.stage_firmware(tmp_path / "root", CONFIG, firmware=fw)


def test_damaged_image_fails_verification(tmp_path):
    out = tmp_path / "fs.img"
    image.make_image(out, CONFIG, 256 * 4096, verify=False)
    data = bytearray(out.read_bytes())
    data[0:2 * 4096] = b"\xff" * (2 * 4096)   # both superblock copies gone
    out.write_bytes(data)
    with pytest.raises(image.ImageError, match="could not use the image"):
        image.verify_image(out)


def test_layouts_follow_the_micropython_release(tmp_path):
    old, new = boards.default_layout("1.24", "8MB"), boards.default_layout("v1.26.1", "16MB")
    assert (old.series, old.vfs_offset, old.vfs_size) == ("1.23-1.25", 0x200000, 0x600000)
    assert (new.series, new.vfs_offset, new.vfs_size) == ("1.26+", 0x200000, 0xE00000)
    with pytest.raises(boards.BoardError, match="1.23 or later"):
        boards.default_layout("1.22", "4MB")
    with pytest.raises(boards.BoardError, match="4MB, 8MB, 16MB"):
        boards.default_layout("1.24", "3MB")


def test_image_needs_a_device_config(tmp_path, capsys):
    assert wisp(["image", "--device", "nodev", "--fleet", str(tmp_path)]) == 2
    assert "wisp provision nodev" in capsys.readouterr().err


@pytest.mark.parametrize("lines, shown", [(False, 'line 1, in fail'), (True, 'line 3, in fail')])
def test_line_numbers_are_left_out_unless_asked_for(tmp_path, lines, shown):
    # they cost heap on a board without ROMFS; --lines keeps them for a traceback that points at the line
    import subprocess

    from tools.paths import micropython_cmd
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw, ignore=shutil.ignore_patterns("__pycache__"))
    (fw / "wisp" / "oops.py").write_text("def fail():\n    x = 1\n    raise ValueError(x)\n")
    stage = image.stage_firmware(tmp_path / "root", CONFIG, firmware=fw, lines=lines)
    done = subprocess.run([micropython_cmd(), "-c", "import wisp.oops; wisp.oops.fail()"], cwd=stage.root,
                          capture_output=True, text=True, timeout=30)
    assert 'File "wisp.oops", ' + shown in done.stdout + done.stderr  # the module's name (image.module_name)


def test_a_micropython_the_firmware_refuses_is_refused_before_building(tmp_path, capsys):
    # firmware/main.py stops on anything before 1.23; an image for 1.20 would never start
    cfg = tmp_path / "imgdev.json"
    cfg.write_text(json.dumps(CONFIG))
    out = tmp_path / "fs.img"
    for old in ("1.20", "1.22"):
        assert wisp(["image", "--config", str(cfg), "-o", str(out), "--mp-version", old]) == 2
        err = capsys.readouterr().err
        assert f"wisp: MicroPython {old} is too old: wisp needs 1.23 or later" in err and len(err.splitlines()) == 1
    assert not out.exists()
    with pytest.raises(boards.BoardError, match="1.23 or later"):
        image.stage_firmware(tmp_path / "root", CONFIG, mp_version="1.22")
