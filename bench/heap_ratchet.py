"""Heap ratchet: the full agent session must work 10 of 10 runs in the -X heapsize kept in
pyproject.toml ([tool.wisp] heap-limit-bytes; heap-tls-limit-bytes with TLS; heap-romfs-limit-bytes
and heap-romfs-tls-limit-bytes from a ROMFS image; heap-frozen-limit-bytes and
heap-frozen-tls-limit-bytes frozen into the firmware), on the 32-bit MicroPython build that models
the ESP32 (bench/esp32_heap.py). Run by `make heap` (.ci/run).

When the builds are absent (they are not in this repository) it says so and passes: it cannot
measure anything else meaningfully, and a 64-bit figure would be a different number. The frozen
cases build their interpreters from MicroPython's sources ($WISP_MP_SRC, bench/frozen32.py); without
them those two cases say so and the others run.

    python bench/heap_ratchet.py            # check both limits
    python bench/heap_ratchet.py --find     # also print the smallest heap that works 10 of 10
    python bench/heap_ratchet.py --only tls --heap 139264   # one case, one heap (bytes)
"""
import argparse
import sys
import tempfile
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
          ("session from ROMFS with TLS", {"romfs": True, "tls": True}, "heap-romfs-tls-limit-bytes", MP32_TLS),
          ("session frozen", {"frozen": True}, "heap-frozen-limit-bytes", "plain"),
          ("session frozen with TLS", {"frozen": True, "tls": True}, "heap-frozen-tls-limit-bytes", "tls"))
NAMES = ("mpy", "tls", "romfs", "romfs-tls", "frozen", "frozen-tls")


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
    ap.add_argument("--only", choices=NAMES,
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
    with tempfile.TemporaryDirectory(prefix="wisp-frozen32-") as tmp:
        frozen = _frozen_builds(tmp, where, args.only)
        for (what, kw, key, build), name in zip(CHECKS, NAMES, strict=True):
            if args.only and args.only != name:
                continue
            if kw.get("frozen") and isinstance(frozen, str):
                print("32-bit heap: %s not measured: %s" % (what, frozen))
                continue
            interpreter = frozen[build] if kw.get("frozen") else where / build
            if not _check(what, kw, key, args.heap or kept[key], interpreter, args.find):
                failed.append(key)
    return 1 if failed else 0


def _frozen_builds(tmp, where, only):
    """{"plain": path, "tls": path} of the frozen builds made in tmp, or why there are none."""
    from bench import frozen32
    if only and not only.startswith("frozen"):
        return "not asked for"
    why = frozen32.missing()
    if why:
        return why
    print("building the firmware frozen into the 32-bit builds (bench/frozen32.py)...", flush=True)
    return frozen32.build(tmp, where)


def _check(what, kw, key, limit, interpreter, find):
    """True when the session works RUNS of RUNS in limit bytes of heap."""
    session = Session(**kw)
    try:
        ok = session.successes(interpreter, limit, RUNS)
        line = "32-bit heap: %s works %d of %d runs in %d KB (%s)" % (what, ok, RUNS, limit // 1024, key)
        if ok < RUNS:
            print(line + ": the firmware needs more heap than its limit: make it leaner, or raise %s in "
                  "pyproject.toml and say why in the commit" % key, file=sys.stderr)
            return False
        print(line)
        if find:
            print("  smallest heap working %d of %d: %d KB" % (RUNS, RUNS,
                                                             smallest(session, interpreter, limit) // 1024))
        return True
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
