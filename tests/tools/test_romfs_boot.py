"""boot.py on a firmware with ROMFS: the wisp package mounted at /rom (built by tools/romfs.py) is
imported from there, ahead of stale .mpy files left on the filesystem; without ROMFS the
filesystem's package is the firmware. Run on the MicroPython unix port, and on the 32-bit build
that models the ESP32 when it is on this machine (bench/esp32_heap.py)."""
import json
import subprocess

import pytest

from bench.esp32_heap import MP32, builds_dir
from tools.paths import FIRMWARE, micropython_cmd
from tools.romfs import build_image

# What the port does at startup on a build with a romfs partition (v1.25+): mount it at /rom and
# search it after the current directory. The image is in RAM here; on the board it is flash.
STARTUP = """
import sys, vfs
if {mount}:
    f = open({image!r}, "rb"); buf = bytearray(f.read()); f.close()
    vfs.mount(vfs.VfsRom(buf), "/rom")
sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"]
exec(open({boot!r}).read(), {{"__name__": "__main__"}})
import wisp, wisp.hal
print("@@", wisp.VERSION, wisp.hal.__file__, repr(sys.path[0]))
"""


def interpreters():
    found = [micropython_cmd()]
    where = builds_dir()
    if where:
        found.append(str(where / MP32))
    return found


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("romfs") / "wisp.romfs"
    build_image(path)
    return path


def _boot(interpreter, root, image, mount):
    script = root / "start.py"
    script.write_text(STARTUP.format(mount=mount, image=str(image), boot=str(FIRMWARE / "boot.py")))
    done = subprocess.run([interpreter, str(script)], cwd=root, capture_output=True, text=True, timeout=60,
                          env={"MICROPYPATH": ".frozen"})
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("@@")]
    assert lines, done.stdout + done.stderr
    return lines[-1].split()[1:]


@pytest.mark.parametrize("interpreter", interpreters())
def test_the_romfs_package_wins_over_stale_files(interpreter, image, tmp_path):
    stale = tmp_path / "wisp"
    stale.mkdir()
    (stale / "__init__.py").write_text('VERSION = "stale"\n')
    (tmp_path / "config.json").write_text(json.dumps({"pins": {"relay": {"pin": 26, "mode": "out"}}}))
    version, hal_file, first = _boot(interpreter, tmp_path, image, True)
    assert version != "stale" and hal_file.startswith("/rom/wisp/") and first == "'/rom'"


@pytest.mark.parametrize("interpreter", interpreters())
def test_stock_firmware_runs_the_package_on_the_filesystem(interpreter, image, tmp_path):
    import shutil
    shutil.copytree(FIRMWARE / "wisp", tmp_path / "wisp")
    version, hal_file, first = _boot(interpreter, tmp_path, image, False)
    assert version != "stale" and hal_file.startswith("wisp/") and first == "''"
