"""Heap ratchet: the full agent session must work 10 of 10 runs in the -X heapsize kept in
pyproject.toml ([tool.wisp] heap-limit-bytes; heap-tls-limit-bytes with TLS; heap-romfs-limit-bytes
and heap-romfs-tls-limit-bytes from a ROMFS image), on the 32-bit
MicroPython build that models the ESP32 (bench/esp32_heap.py). Run by `make heap` (.ci/run).

When the builds are absent (they are not in this repository) it says so and passes: it cannot
measure anything else meaningfully, and a 64-bit figure would be a different number.

    python bench/heap_ratchet.py            # check both limits
    python bench/heap_ratchet.py --find     # also print the smallest heap that works 10 of 10
    python bench/heap_ratchet.py --only tls --heap 139264   # one case, one heap (bytes)
"""
import argparse
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.esp32_heap import MP32, MP32_TLS, Session, builds_dir  # noqa: E402
from tools.paths import REPO  # noqa: E402

RUNS = 10
STEP = 4 * 1024


# (what, Session keywords, pyproject key, which build)
CHECKS = (("session from .mpy files", {}, "heap-limit-bytes", MP32),
          ("session from .mpy files with TLS", {"tls": True}, "heap-tls-limit-bytes", MP32_TLS),
          ("session from ROMFS", {"romfs": True}, "heap-romfs-limit-bytes", MP32),
          ("session from ROMFS with TLS", {"romfs": True, "tls": True}, "heap-romfs-tls-limit-bytes", MP32_TLS))


def limits():
    with open(REPO / "pyproject.toml", "rb") as f:
        cfg = tomllib.load(f)["tool"]["wisp"]
    return {key: int(cfg[key]) for _what, _kw, key, _build in CHECKS}


def smallest(session, interpreter, start):
    """Walk down from a heap that works 10 of 10 in STEP steps to the last one that still does."""
    heap = start
    while heap - STEP > 0 and session.successes(interpreter, heap - STEP, RUNS) == RUNS:
        heap -= STEP
    return heap


def main(argv=None):
    ap = argparse.ArgumentParser(prog="heap_ratchet", description=__doc__.splitlines()[0])
    ap.add_argument("--find", action="store_true", help="also find the smallest heap that works 10 of 10")
    ap.add_argument("--only", choices=("mpy", "tls", "romfs", "romfs-tls"),
                    help="check one case only (measuring a change takes minutes, not a quarter hour)")
    ap.add_argument("--heap", type=int, help="heap in bytes to check instead of the pyproject.toml limit")
    args = ap.parse_args(argv)
    where = builds_dir()
    if where is None:
        print("heap ratchet skipped: the 32-bit MicroPython builds (%s, %s) were not found in $WISP_MP32_DIR "
              "nor in a shared/micropython directory above %s" % (MP32, MP32_TLS, REPO))
        return 0
    failed = []
    kept = limits()
    for (what, kw, key, build), name in zip(CHECKS, ("mpy", "tls", "romfs", "romfs-tls"), strict=True):
        if args.only and args.only != name:
            continue
        limit, interpreter = args.heap or kept[key], where / build
        session = Session(**kw)
        try:
            ok = session.successes(interpreter, limit, RUNS)
            line = "32-bit heap: %s works %d of %d runs in %d KB (%s)" % (what, ok, RUNS, limit // 1024, key)
            if ok < RUNS:
                failed.append(key)
                print(line + ": the firmware needs more heap than its limit: make it leaner, or raise %s in "
                      "pyproject.toml and say why in the commit" % key, file=sys.stderr)
            else:
                print(line)
                if args.find:
                    print("  smallest heap working %d of %d: %d KB" % (RUNS, RUNS,
                                                                     smallest(session, interpreter, limit) // 1024))
        finally:
            session.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
