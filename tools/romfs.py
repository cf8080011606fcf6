"""ROMFS images of the firmware: bytecode that runs in place from flash instead of being
copied into the heap. On an ESP32 whose MicroPython has a ROMFS partition (v1.25+), the image
is mounted at /rom; the simulator maps it outside the MicroPython heap, as flash would be.

    python -m tools.romfs build OUT.romfs            # wisp package -> ROMFS image
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


def build_image(out_path, firmware_dir=FIRMWARE):
    """The wisp package and wispboot (which main.py imports first) as a ROMFS image (mpremote
    compiles each .py to .mpy)."""
    with tempfile.TemporaryDirectory(prefix="wisp-romfs-") as staging:
        constfold.stage_package(staging, firmware_dir)  # constants inlined, as in .mpy files
        mpremote = Path(sys.executable).parent / "mpremote"
        subprocess.run([str(mpremote), "romfs", "--mpy", "--output", str(out_path), "build", staging],
                       check=True, capture_output=True)
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
        print("%d bytes" % build_image(argv[1]))
        return 0
    if len(argv) == 4 and argv[0] == "run":
        return run(argv[1], argv[2] or None, argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
