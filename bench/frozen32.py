"""The firmware frozen into the 32-bit MicroPython builds that model the ESP32 (bench/esp32_heap.py):
the same v1.26.1 unix port and options, built again with the wisp package and wispboot frozen, as a
custom ESP32 firmware built with tools/frozen_manifest.py holds them. Frozen code and its names live
in the firmware image, not in the heap, so these builds measure what such a board's heap holds.

Needs a MicroPython v1.26.1 source tree with its lib/mbedtls and lib/micropython-lib submodules
($WISP_MP_SRC) and a 32-bit C toolchain (Debian: gcc-multilib). Each build takes ~30 s on 2 cores.

    python -m bench.frozen32 OUT_DIR      # build both into OUT_DIR, print their paths
"""
import os
import subprocess
import sys
from pathlib import Path

from tools.paths import REPO

WISP_MANIFEST = REPO / "tools" / "frozen_wisp.py"  # the package and wispboot, as the ESP32 build freezes them
# the build options of the 32-bit builds in $WISP_MP32_DIR (their README)
MAKE_ARGS = ("VARIANT=standard", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
             "LDFLAGS_EXTRA=-static")
TLS_CONFIG = "mbedtls_config_port.h.tls-in-heap"  # beside the builds: mbedTLS allocates from the GC heap


def source_dir():
    """The MicroPython source tree, or None when $WISP_MP_SRC does not name a usable one."""
    given = os.environ.get("WISP_MP_SRC")
    if not given:
        return None
    src = Path(given)
    needed = ("ports/unix/Makefile", "lib/mbedtls/library/ssl_tls.c", "lib/micropython-lib/python-stdlib")
    return src if all((src / p).exists() for p in needed) else None


def missing():
    """Why the frozen builds cannot be made here, or None."""
    if source_dir() is None:
        return ("no MicroPython v1.26.1 source tree with lib/mbedtls and lib/micropython-lib in $WISP_MP_SRC "
                "(git clone --recursive --branch v1.26.1 of MicroPython)")
    probe = subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", os.devnull, "-static"], input=b"int main(){return 0;}",
                           capture_output=True)
    if probe.returncode:
        return "no 32-bit C toolchain (apt install gcc-multilib)"
    return None


def build(out_dir, tls_config_dir):
    """Build the plain and the TLS-in-heap frozen interpreters into out_dir: {"plain": path, "tls": path}.
    tls_config_dir: where the TLS-in-heap mbedTLS config lies (the 32-bit builds' directory)."""
    src, out = source_dir(), Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.py"
    manifest.write_text('include("$(PORT_DIR)/variants/standard/manifest.py")\ninclude("%s")\n' % WISP_MANIFEST)
    if not (src / "mpy-cross" / "build" / "mpy-cross").exists():
        _make(src, ["-C", "mpy-cross"], out / "mpy-cross.log")
    builds = {}
    for name, extra in (("plain", []),
                        ("tls", ["CFLAGS_EXTRA=-DMICROPY_TRACKED_ALLOC=1",
                                 'MBEDTLS_CONFIG_FILE=\\"%s\\"' % (Path(tls_config_dir).resolve() / TLS_CONFIG)])):
        build_dir = out / ("build-" + name)
        _make(src, ["-C", "ports/unix", *MAKE_ARGS, *extra, "BUILD=%s" % build_dir, "FROZEN_MANIFEST=%s" % manifest],
              out / (name + ".log"))
        builds[name] = build_dir / "micropython"
    return builds


def _make(src, args, log):
    with open(log, "w") as f:
        done = subprocess.run(["make", "-j%d" % (os.cpu_count() or 1), *args], cwd=src, stdout=f,
                              stderr=subprocess.STDOUT)
    if done.returncode:  # the log may be in a directory about to go: say its end here
        tail = "".join(Path(log).read_text(errors="replace").splitlines(True)[-15:])
        raise RuntimeError("building MicroPython failed (make %s), the end of its log:\n%s" % (" ".join(args), tail))


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    why = missing()
    if why:
        print("frozen builds: " + why, file=sys.stderr)
        return 1
    from bench.esp32_heap import builds_dir
    where = builds_dir()
    if where is None:
        print("frozen builds: the 32-bit builds' directory (with %s) was not found: set $WISP_MP32_DIR" % TLS_CONFIG,
              file=sys.stderr)
        return 1
    for name, path in build(args[0], where).items():
        print(name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
