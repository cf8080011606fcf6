"""Power cuts inside LittleFS, as an ESP32 meets them: the firmware's real writes (memory, routines,
jobs and time zone, boot counter, replay floor, pin levels, Home Assistant topics, an OTA update
and its trial boots) on VfsLfs2 over a simulated 4 MB board's flash (tests/firmware/lfsflash.py),
cut at every program/erase operation of each write (tests/firmware/lfssweep.py, on the real
MicroPython unix port). Every cut must leave a flash that mounts as _boot.py mounts it and boots
without an error into, file by file, the state before the write or after it.
bench/lfs_power_cut.py runs the same sweep with every tearing and twice-cut boots."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tools.image import build_image, stage_firmware
from tools.paths import micropypath, micropython_cmd

HERE = Path(__file__).parent
SWEEP = HERE / "lfssweep.py"
HEAP = "48m"               # three copies of the 2 MB flash, and the firmware
TIMEOUT_S = 240
SCENARIOS = ("memory", "routines", "schedule", "device", "ota", "ota-rollback")


def sweep(cwd, *args, micropython=None, timeout=TIMEOUT_S):
    """Run lfssweep.py; its output lines and exit code."""
    env = dict(os.environ, MICROPYPATH=micropypath(HERE))
    cmd = [micropython or micropython_cmd(), "-X", f"heapsize={HEAP}", str(SWEEP), *map(str, args)]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return (done.stdout + done.stderr).splitlines(), done.returncode


def results(lines):
    """{scenario: {field: int}} from the SWEEP lines, and the TOTAL line's fields."""
    fields = lambda line: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}  # noqa: E731
    per = {line.split()[1]: fields(line) for line in lines if line.startswith("SWEEP ")}
    total = [fields(line) for line in lines if line.startswith("TOTAL ")]
    return per, total[0] if total else None


def failures(lines):
    return "\n".join([line for line in lines if line.startswith("FAIL")][:20] or lines[-30:])


def image_for(tmp):
    """The LittleFS image `wisp image` writes for a 4 MB board (littlefs-python, on-disk version
    2.0, the firmware as .mpy files), with the sweep's config.json in it, as tmp/flash.bin."""
    lines, rc = sweep(tmp, "--config")
    assert rc == 0, lines
    stage = stage_firmware(tmp / "root", json.loads(lines[0]))
    path = tmp / "flash.bin"
    build_image(stage.root, path, 512 * 4096)
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return image_for(tmp_path_factory.mktemp("lfs"))


def test_every_cut_of_every_write_boots_into_the_old_or_the_new_state(image):
    # clean cuts, and cuts where the operation cut programs or erases half of its bytes
    lines, rc = sweep(image.parent, image, "--torn=0,2")
    per, total = results(lines)
    assert rc == 0 and total and total["failures"] == 0, failures(lines)
    assert sorted(per) == sorted(SCENARIOS), lines[-10:]
    for name, r in per.items():
        # a sweep where no cut kept the new state, or none the old, proves nothing about the flip
        assert r["before"] > 0 and r["after"] > 0, (name, r)
    assert total["resumed"] > 0, "no cut landed where an OTA update resumes"
    assert total["cuts"] >= 700, total


def test_a_volume_micropython_formatted_itself_saves_again_after_every_cut(tmp_path):
    # wisp deploy copies the files onto the volume MicroPython made at its first boot (on-disk 2.1)
    lines, rc = sweep(tmp_path, "mkfs", "--alive", "--only=memory,routines,schedule,device")
    per, total = results(lines)
    assert rc == 0 and total and total["failures"] == 0, failures(lines)
    assert total["alive"] == total["cuts"] >= 100, total


def test_cuts_while_littlefs_moves_the_root_directory_out_of_the_superblock(image):
    # after ~100 compactions of the superblock pair (block_cycles) littlefs moves the root
    # directory to new blocks: memory saves on a flash aged to just before, cut at every operation
    lines, rc = sweep(image.parent, image, "--aged=8", "--torn=0,2")
    per, total = results(lines)
    assert rc == 0 and total and total["failures"] == 0, failures(lines)
    aged = [line for line in lines if line.startswith("AGED ")]
    assert aged and "root_moved=1" in aged[0] and "superblock_compactions=0" not in aged[0], lines[-5:]
    assert per["memory-aged"]["cuts"] >= 200, per


def test_the_sweep_catches_a_save_that_is_not_atomic(image):
    # the same sweep with wisp.store.save writing memory.json in place, in two parts
    lines, rc = sweep(image.parent, image, "--broken-save", "--only=memory")
    assert rc != 0
    assert any("memory.json unreadable" in line for line in lines if line.startswith("FAIL")), lines[-10:]
