"""Power cuts inside LittleFS, exhaustively: tests/firmware/lfssweep.py cuts every write the firmware
makes at each program/erase operation, with every tearing of the operation cut (none, 1/4, 2/4,
3/4 of its bytes), cuts the boot after each cut again at each of its own operations, resumes a cut
OTA update, and saves a fact after each cut; on the image `wisp image` writes (on-disk 2.0), on a
volume MicroPython formatted itself (2.1), and on a flash aged to the moment littlefs moves the
root directory out of the superblock pair. Runs on the venv's MicroPython and, when present, on
the 32-bit v1.26.1 build (bench/esp32_heap.py says where it is looked for). make test runs a
bounded sweep (tests/firmware/test_lfs_power_cut.py). Prints and records the counts."""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.esp32_heap import MP32, builds_dir  # noqa: E402
from bench.report import write_section  # noqa: E402
from tests.firmware.test_lfs_power_cut import image_for, results, sweep  # noqa: E402
from tools.paths import micropython_cmd  # noqa: E402

ALL = ("--torn=0,1,2,3", "--double", "--alive")
RUNS = [  # (what, flash, extra arguments)
    ("`wisp image` (littlefs 2.0)", "image", ()),
    ("MicroPython's own format (2.1)", "mkfs", ()),
    ("aged: the root leaves the superblock pair", "image", ("--aged=24",)),
]


def label(mp):
    """"v1.26.1, 32-bit": which MicroPython (and so which littlefs) ran the sweep."""
    code = ("import sys, struct; "
            "print('v%d.%d.%d, %d-bit' % (sys.implementation.version[:3] + (8 * struct.calcsize('P'),)))")
    return subprocess.run([mp, "-c", code], capture_output=True, text=True, timeout=30).stdout.strip()


def main():
    interpreters = [micropython_cmd()]
    d = builds_dir()
    if d is not None:
        interpreters.append(str(d / MP32))
    rows, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="wisp-lfscut-") as tmp:
        image = image_for(Path(tmp))
        for mp in interpreters:
            name = label(mp)
            for what, flash, extra in RUNS:
                t0 = time.monotonic()
                lines, rc = sweep(tmp, image if flash == "image" else "mkfs", *ALL, *extra,
                                  micropython=mp, timeout=3600)
                per, total = results(lines)
                s = time.monotonic() - t0
                for line in lines:
                    if line.startswith(("FAIL", "SWEEP", "AGED")):
                        print(line[:300])
                if rc or not total or total["failures"]:
                    failed += 1
                    total = total or {"cuts": 0, "failures": "?", "double": 0, "resumed": 0, "alive": 0}
                steps = sum(r["steps"] for r in per.values())
                rows.append(f"| {name} | {what} | {len(per)} | {steps} | {total['cuts']} | {total['double']} "
                            f"| {total['resumed']} | {total['alive']} | {total['failures']} | {s:.0f} |")
                print(rows[-1])
    table = "\n".join([
        "## Power cuts inside LittleFS",
        "",
        "`bench/lfs_power_cut.py`: the firmware's writes on VfsLfs2 over a simulated 4 MB ESP32's",
        "flash (2 MB region, 4096-byte blocks, NOR semantics; tests/firmware/lfsflash.py), each cut at",
        "every program/erase operation, clean and with 1/4, 2/4, 3/4 of the cut operation done. A cut",
        "passes when the flash mounts as `_boot.py` mounts it, boots with no error, holds each file's",
        "state before or after the write, a cut OTA update resumes to the new version, a fact saved",
        "afterwards is there at the next boot, and the boot after the cut, cut again at each of its",
        "own operations, still passes (\"twice-cut boots\").",
        "",
        "| MicroPython | flash | write sequences | steps | cut points (operations x 4 tearings) "
        "| twice-cut boots | OTA resumes "
        "| saves after a cut | failures | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    write_section("lfs_power_cut", table)
    print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
