"""The firmware on an older MicroPython: the firmware tests, file by file, on a given unix port build,
and the full agent session (bench/device_footprint.py SESSION, plain and over TLS) from the `.mpy`
files `wisp image` makes. The firmware says it runs on MicroPython 1.23 and later, and `make test`
runs a newer port; build 1.23, 1.24 and 1.25 (bench/mp_build.py) and run this on each.

    python bench/mp_versions.py --micropython PATH [--micropython PATH2 ...] [--e2e] [--write]

Prints one line per test file (passed, failed) and a total per build; --e2e adds tests/e2e (the
real firmware booted against real mosquitto), --write puts the table into docs/benchmarks.md.
Not part of `make test` or `make bench`: it needs the builds. Exit code 1 when anything failed.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.paths import REPO  # noqa: E402

FILE_TIMEOUT_S = 1200
SESSION_HEAP = 1024 * 1024  # a 64-bit build: this checks what works, not how little heap it needs
SECTION = """## The firmware on older MicroPython releases

The firmware runs on MicroPython 1.23 and later; `make test` runs a newer unix port. `bench/mp_versions.py{e2e}
--micropython PATH ...` runs {scope} file by file on each build given (`WISP_MICROPYTHON`), then the
full agent session (bench/device_footprint.py) from the `.mpy` files `wisp image` makes, plain and
over TLS to mosquitto. The builds: the unix port, standard variant, 64-bit, of each release, made
with no network by `bench/mp_build.py v1.23.0 OUT --micropython-git DIR --mbedtls-git DIR --lib-git DIR`
(the release from a clone of micropython/micropython, its `lib/mbedtls` and `lib/micropython-lib`
submodules from clones of Mbed-TLS/mbedtls and micropython/micropython-lib at the commits the
release pins, `git ls-tree v1.23.0 lib/`; btree left out, `MICROPY_PY_BTREE=0`; ffi from the
system's libffi, `libffi-dev` and `pkg-config`). With network, `git clone --recursive --branch
v1.23.0` and `make -C ports/unix VARIANT=standard MICROPY_PY_BTREE=0` make the same build.

"""
COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")


def version_of(micropython):
    """'1.23.0' from the interpreter itself."""
    out = subprocess.run([micropython, "-c", "import sys; print('%d.%d.%d' % sys.implementation.version[:3])"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode:
        raise SystemExit(f"{micropython} does not run: {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def test_files(e2e):
    firmware = sorted((REPO / "tests" / "firmware").glob("mp_test_*.py")) + \
        sorted((REPO / "tests" / "firmware").glob("test_*.py"))
    return firmware + (sorted((REPO / "tests" / "e2e").glob("test_*.py")) if e2e else [])


def run_file(micropython, path):
    """(passed, failed) of one test file run by pytest with this interpreter; errors count as failed."""
    env = dict(os.environ, WISP_MICROPYTHON=str(micropython))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=FILE_TIMEOUT_S)
        last = (done.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        return 0, 1
    counts = {kind.rstrip("s"): int(n) for n, kind in COUNT.findall(last)}
    failed = counts.get("failed", 0) + counts.get("error", 0)
    return counts.get("passed", 0), failed or (0 if counts else 1)  # no summary line: it broke


def run_session(micropython, tls):
    """True when the whole agent session works on this build from the compiled .mpy files."""
    from bench.esp32_heap import Session
    s = Session(tls=tls)
    try:
        return s.works(micropython, SESSION_HEAP)
    finally:
        s.close()


def check_build(micropython, e2e):
    """{"version", "files": [(name, passed, failed)], "sessions": {name: ok}}, printing as it goes."""
    version = version_of(micropython)
    print(f"MicroPython {version}: {micropython}", flush=True)
    files = []
    for path in test_files(e2e):
        t0 = time.monotonic()
        passed, failed = run_file(micropython, path)
        name = path.relative_to(REPO).as_posix()
        files.append((name, passed, failed))
        print(f"  {'FAIL' if failed else 'ok  '} {name}: {passed} passed, {failed} failed "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
    sessions = {}
    for name, tls in (("session from .mpy", False), ("session from .mpy, TLS", True)):
        sessions[name] = run_session(micropython, tls)
        print(f"  {'ok  ' if sessions[name] else 'FAIL'} {name}", flush=True)
    return {"version": version, "files": files, "sessions": sessions}


def table(results):
    lines = ["| MicroPython | tests passed | tests failed | failing files | agent session from .mpy (plain, TLS) |",
             "|---|---|---|---|---|"]
    for r in results:
        bad = ", ".join(Path(name).name for name, _p, f in r["files"] if f) or "none"
        lines.append("| %s | %d | %d | %s | %s |" % (
            r["version"], sum(p for _n, p, _f in r["files"]), sum(f for _n, _p, f in r["files"]), bad,
            ", ".join("works" if ok else "FAILS" for ok in r["sessions"].values())))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--micropython", action="append", required=True, help="a unix port build to check")
    ap.add_argument("--e2e", action="store_true", help="also tests/e2e (the firmware booted against mosquitto)")
    ap.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args(argv)
    results = [check_build(Path(mp).resolve(), args.e2e) for mp in args.micropython]
    print(table(results))
    if args.write:
        from bench.report import write_section
        scope = "tests/firmware and tests/e2e" if args.e2e else "tests/firmware"
        write_section("mp-versions", SECTION.format(scope=scope, e2e=" --e2e" if args.e2e else "") + table(results))
    failed = any(f for r in results for _n, _p, f in r["files"]) or not all(
        ok for r in results for ok in r["sessions"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
