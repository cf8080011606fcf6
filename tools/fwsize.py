"""Firmware size ratchet: compile firmware/wisp for the ESP32 and fail when the .mpy total grows past
the limit kept in pyproject.toml ([tool.wisp] mpy-limit-bytes), so the firmware never grows unnoticed.
The .mpy files are what loads into the heap; the strings the build moved to flash
(wisp/strings.bin, tools/flashtext.py) are read one at a time and are reported beside the total.

Run by .ci/run (`make size`). When the firmware shrinks, lower the limit to the new total.
"""
import argparse
import sys
import tempfile
import tomllib
from pathlib import Path

from tools.flashtext import CATALOG
from tools.image import DEFAULT_MARCH, stage_firmware
from tools.paths import FIRMWARE, REPO

PYPROJECT = REPO / "pyproject.toml"
GOAL_BYTES = 64 * 1024  # the .mpy total the firmware is meant to fit in (docs/benchmarks.md)


def limit_bytes(pyproject=PYPROJECT):
    """The limit recorded in the repo."""
    with open(pyproject, "rb") as f:
        return int(tomllib.load(f)["tool"]["wisp"]["mpy-limit-bytes"])


def measure(firmware=FIRMWARE, march=DEFAULT_MARCH):
    """(bytes of every firmware/wisp/**/*.py compiled to .mpy, bytes of the strings file), as `wisp
    image` and `wisp deploy` ship them."""
    with tempfile.TemporaryDirectory(prefix="wisp-fwsize-") as tmp:
        stage = stage_firmware(tmp, march=march, firmware=firmware)
        sizes = {f: (Path(tmp) / f).stat().st_size for f in stage.files if f.startswith("wisp/")}
        return sum(n for f, n in sizes.items() if f.endswith(".mpy")), sizes.get(CATALOG, 0)


def mpy_total(firmware=FIRMWARE, march=DEFAULT_MARCH):
    return measure(firmware, march)[0]


def verdict(total, limit, strings=None):
    """(ok, the line to print) for a measured total against the limit."""
    line = (f"firmware .mpy total ({DEFAULT_MARCH}): {total} bytes ({total / 1024:.1f} KB), "
            f"limit {limit} bytes ({limit / 1024:.1f} KB), goal {GOAL_BYTES // 1024} KB")
    if strings:
        line += f"; beside it {strings} bytes of strings read from flash when used ({CATALOG})"
    if total > limit:
        return False, (f"{line}\nfwsize: the firmware grew {total - limit} bytes past its limit: "
                       f"make it smaller, or raise mpy-limit-bytes in pyproject.toml and say why in the commit")
    return True, line


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fwsize", description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="bytes (default: [tool.wisp] mpy-limit-bytes in pyproject.toml)")
    ap.add_argument("--firmware", type=Path, default=FIRMWARE, help="firmware folder holding wisp/ (default firmware/)")
    args = ap.parse_args(argv)
    limit = limit_bytes() if args.limit is None else args.limit
    total, strings = measure(args.firmware)
    ok, line = verdict(total, limit, strings)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
