"""Build an older MicroPython unix port (standard variant, 64-bit) for bench/mp_versions.py, from local
git repositories only: no network, so no `git submodule update`. The two submodules the standard
variant needs come from repositories of their own, at the commits the release pins:

    python bench/mp_build.py v1.23.0 OUT_DIR --micropython-git DIR --mbedtls-git DIR --lib-git DIR

DIR: a clone (or bare mirror) of micropython/micropython, Mbed-TLS/mbedtls and micropython/micropython-lib.
btree is left out (its submodule, berkeley-db-1.xx, is not needed by wisp); ffi uses the system's
libffi (Debian: apt install libffi-dev pkg-config). Prints the interpreter's path; ~2 minutes on 2 cores.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

# submodule -> the part of it the unix port compiles (Mbed TLS: its sources and headers only)
SUBMODULES = {"lib/mbedtls": ("library", "include"), "lib/micropython-lib": ()}
MAKE_ARGS = ("VARIANT=standard", "MICROPY_PY_BTREE=0")


def git(repo, *args, **kw):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, **kw).stdout


def extract(repo, rev, dest, paths=()):
    """The tree of rev (its `paths` only, if given) written into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = git(repo, "archive", "--format=tar", rev, *paths)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def pinned(repo, tag, path):
    """The commit the release `tag` pins submodule `path` at."""
    line = git(repo, "ls-tree", tag, path, text=True).split()
    if len(line) < 3 or line[1] != "commit":
        raise SystemExit(f"{tag} has no submodule {path}")
    return line[2]


def build(tag, out, mp_git, sub_gits):
    src = out / ("micropython-" + tag.lstrip("v"))
    if src.exists():
        raise SystemExit(f"{src} exists: remove it or choose another OUT_DIR")
    extract(mp_git, tag, src)
    for path, parts in SUBMODULES.items():
        commit = pinned(mp_git, tag, path)
        try:
            extract(sub_gits[path], commit, src / path, parts)
        except subprocess.CalledProcessError as e:
            raise SystemExit(f"{sub_gits[path]} lacks {commit} ({path} of {tag}): {e.stderr.decode()[-300:]}") from None
    jobs = "-j%d" % (os.cpu_count() or 1)
    with open(out / ("build-%s.log" % tag), "w") as log:
        for args in (["-C", "mpy-cross"], ["-C", "ports/unix", *MAKE_ARGS]):
            if subprocess.run(["make", jobs, *args], cwd=src, stdout=log, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"make {' '.join(args)} failed: see {log.name}")
    return src / "ports" / "unix" / "build-standard" / "micropython"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tag", help="a MicroPython release tag, e.g. v1.23.0")
    ap.add_argument("out", type=Path, help="where the source tree and the build go")
    ap.add_argument("--micropython-git", type=Path, required=True)
    ap.add_argument("--mbedtls-git", type=Path, required=True)
    ap.add_argument("--lib-git", type=Path, required=True, help="micropython-lib")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(build(args.tag, args.out.resolve(), args.micropython_git,
                {"lib/mbedtls": args.mbedtls_git, "lib/micropython-lib": args.lib_git}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
