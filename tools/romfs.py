"""ROMFS images of the firmware: bytecode that runs in place from flash instead of being
copied into the heap. On an ESP32 whose MicroPython has a ROMFS partition (v1.25+), the image
is mounted at /rom; the simulator maps it outside the MicroPython heap, as flash would be.

    python -m tools.romfs build OUT.romfs            # wisp package -> ROMFS image
    python -m tools.romfs run IMAGE [heapsize] main.py  # (internal) run the unix port with it
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import constfold, shortnames
from tools.paths import FIRMWARE

BOOTSTRAP = Path(__file__).with_name("romfs_boot.py")


def build_image(out_path, firmware_dir=FIRMWARE):
    """The wisp package and wispboot (which main.py imports first) as a ROMFS image (mpremote
    compiles each .py to .mpy)."""
    with tempfile.TemporaryDirectory(prefix="wisp-romfs-") as staging:
        shutil.copytree(Path(firmware_dir) / "wisp", Path(staging) / "wisp",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copyfile(Path(firmware_dir) / "wispboot.py", Path(staging) / "wispboot.py")
        consts = constfold.package_consts(Path(staging) / "wisp")  # inlined, as in .mpy files
        kept = shortnames.package_kept(Path(staging) / "wisp", Path(firmware_dir).glob("*.py"), consts)
        for src in sorted((Path(staging) / "wisp").rglob("*.py")):
            text = constfold.module_source(src, src.relative_to(staging).as_posix(), consts, kept)
            if text is not None:
                src.write_text(text, encoding="utf-8")
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
