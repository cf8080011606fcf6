"""ROMFS images of the firmware: bytecode that runs in place from flash instead of being
copied into the heap. On an ESP32 whose MicroPython has a ROMFS partition (v1.25+), the image
is mounted at /rom; the simulator maps it outside the MicroPython heap, as flash would be.

    .venv/bin/python -m tools.romfs build OUT.romfs    # wisp package -> ROMFS image (mpremote builds it)
    python -m tools.romfs run IMAGE [heapsize] main.py  # (internal) run the unix port with it
"""
import ctypes
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import constfold
from tools.paths import FIRMWARE

BOOTSTRAP = Path(__file__).with_name("romfs_boot.py")


class RomfsError(Exception):
    pass


def build_image(out_path, firmware_dir=FIRMWARE):
    """The wisp package and wispboot (which main.py imports first) as a ROMFS image (mpremote
    compiles each .py to .mpy)."""
    with tempfile.TemporaryDirectory(prefix="wisp-romfs-") as staging:
        constfold.stage_package(staging, firmware_dir)  # constants inlined, as in .mpy files
        # mpremote as a module of this Python: its script sits only in the venv's bin/
        done = subprocess.run([sys.executable, "-m", "mpremote", "romfs", "--mpy", "--output", str(out_path),
                               "build", staging], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise RomfsError(f"mpremote romfs build failed: {why[-1] if why else 'exit code %d' % done.returncode} "
                         f"(run it with the venv's Python, .venv/bin/python, after `make setup`)")
    return Path(out_path).stat().st_size


def run(image, heapsize, script):
    """Run the unix port in this process with the image in memory outside its heap."""
    import micropython_unix
    data = Path(image).read_bytes()
    buf = ctypes.create_string_buffer(data, len(data))  # lives as long as this process: like flash
    os.environ["WISP_ROMFS"] = "%d:%d" % (ctypes.addressof(buf), len(data))
    os.environ["MICROPYPATH"] = ".frozen"  # code comes from /rom only
    os.environ["WISP_MAIN"] = str(script)
    args = ["micropython"] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [str(BOOTSTRAP)]
    return micropython_unix.run_main(args)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "build":
        try:
            print("%d bytes" % build_image(argv[1]))
        except RomfsError as e:
            print(f"wisp: {e}", file=sys.stderr)
            return 2
        return 0
    if len(argv) == 4 and argv[0] == "run":
        return run(argv[1], argv[2] or None, argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
