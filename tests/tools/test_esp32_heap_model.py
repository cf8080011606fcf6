"""The ESP32 heap model (bench/esp32_heap.py) loads the firmware as a board does: from the device's
flash root, so each module's interned file name is the board's `wisp/<name>.mpy`, not a long path
of this machine (44 modules of it would count ~2 KB of heap no board spends)."""
import os
import subprocess

import pytest

from bench.device_footprint import compile_firmware
from bench.esp32_heap import MP32, builds_dir, flash_root
from tools.paths import micropython_cmd

PROBE = "import wisp.civil, wisp.hal.pinmap\nprint('@@', wisp.civil.__file__, wisp.hal.pinmap.__file__)\n"


def interpreters():
    found = [micropython_cmd()]
    if builds_dir():
        found.append(str(builds_dir() / MP32))
    return found


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    fw = tmp_path_factory.mktemp("fw")
    compile_firmware(fw)
    return fw


@pytest.mark.parametrize("interpreter", interpreters())
def test_modules_load_by_the_boards_paths(firmware, tmp_path, interpreter):
    flash_root(firmware, tmp_path)
    assert (tmp_path / "main.py").is_file() and (tmp_path / "wisp" / "civil.mpy").is_file()
    (tmp_path / "probe.py").write_text(PROBE)
    out = subprocess.run([interpreter, "-m", "probe"], cwd=tmp_path, env=dict(os.environ, MICROPYPATH=".frozen"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("@@", 1)[1].split() == ["wisp/civil.mpy", "wisp/hal/pinmap.mpy"]


def test_a_run_that_reset_the_board_fails_only_when_resets_are_refused(monkeypatch):
    """The footprint bench's "without a reset" column: a session that came back after the broker
    restart only by resetting the board (a reboot) still works, but not when no_reset is set."""
    import bench.device_footprint as footprint
    from bench.esp32_heap import Session

    def session_that_resets(stack, heap, load, dev_id, resets=None):
        resets.append(dev_id)  # as session_works does when the device exits with code 3 and starts again
        return True

    monkeypatch.setattr(footprint, "session_works", session_that_resets)
    session = Session.__new__(Session)  # the rule only: no broker, bridge or firmware needed
    session.runs, session.resets, session.tls, session.romfs, session.extra = 0, [], False, None, None
    session.fw, session.stack, session.no_reset = None, None, False
    assert session.works(None, 64 * 1024) is True
    session.no_reset = True
    assert session.works(None, 64 * 1024) is False
    assert session.resets == ["h1", "h2"]
