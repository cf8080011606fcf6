"""Firmware size ratchet: compile firmware/wisp for the ESP32 and fail when the .mpy total grows past
the limit kept in pyproject.toml ([tool.wisp] mpy-limit-bytes), so the firmware never grows unnoticed.

Run by .ci/run (`make size`). When the firmware shrinks, lower the limit to the new total.
"""
import argparse
import sys
import tempfile
import tomllib
from pathlib import Path

from tools.image import DEFAULT_MARCH, stage_firmware
from tools.paths import FIRMWARE, REPO

PYPROJECT = REPO / "pyproject.toml"
GOAL_BYTES = 64 * 1024  # the .mpy total the firmware is meant to fit in (docs/benchmarks.md)


def limit_bytes(pyproject=PYPROJECT):
    """The limit recorded in the repo."""
    with open(pyproject, "rb") as f:
        return int(tomllib.load(f)["tool"]["wisp"]["mpy-limit-bytes"])


def mpy_total(firmware=FIRMWARE, march=DEFAULT_MARCH):
    """Bytes of every firmware/wisp/**/*.py compiled to .mpy, as `wisp image` and `wisp deploy` ship it."""
    with tempfile.TemporaryDirectory(prefix="wisp-fwsize-") as tmp:
        stage = stage_firmware(tmp, march=march, firmware=firmware)
        return sum((Path(tmp) / f).stat().st_size for f in stage.files if f.startswith("wisp/") and f.endswith(".mpy"))


def verdict(total, limit):
    """(ok, the line to print) for a measured total against the limit."""
    line = (f"firmware .mpy total ({DEFAULT_MARCH}): {total} bytes ({total / 1024:.1f} KB), "
            f"limit {limit} bytes ({limit / 1024:.1f} KB), goal {GOAL_BYTES // 1024} KB")
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
    ok, line = verdict(mpy_total(args.firmware), limit)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
