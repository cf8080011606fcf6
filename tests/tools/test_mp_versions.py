"""bench/mp_build.py takes a release and the submodules it pins from local git repositories; bench/mp_versions.py
counts what each firmware test file does on a given interpreter."""
import subprocess

import pytest

from bench import mp_build, mp_versions
from tools.paths import REPO, micropython_cmd


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _repo(path, files):
    path.mkdir()
    _git(path, "init", "-q")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    _git(path, "add", ".")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    return _git(path, "rev-parse", "HEAD")


@pytest.fixture
def release(tmp_path):
    """A 'micropython' repository whose tag v9.9.9 pins lib/mbedtls at a commit of an 'mbedtls' one."""
    tls_commit = _repo(tmp_path / "mbedtls", {"library/ssl_tls.c": "x", "include/mbedtls/ssl.h": "x",
                                              "tests/huge.data": "x"})
    mp = tmp_path / "micropython"
    _repo(mp, {"ports/unix/Makefile": "x"})
    _git(mp, "update-index", "--add", "--cacheinfo", "160000,%s,lib/mbedtls" % tls_commit)
    _git(mp, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pin")
    _git(mp, "tag", "v9.9.9")
    return mp, tmp_path / "mbedtls", tls_commit


def test_the_pinned_submodule_commit_is_taken_from_its_own_repository(release, tmp_path):
    mp, tls, commit = release
    assert mp_build.pinned(mp, "v9.9.9", "lib/mbedtls") == commit
    out = tmp_path / "src"
    mp_build.extract(mp, "v9.9.9", out)
    mp_build.extract(tls, commit, out / "lib" / "mbedtls", mp_build.SUBMODULES["lib/mbedtls"])
    assert (out / "ports" / "unix" / "Makefile").is_file()
    assert (out / "lib" / "mbedtls" / "library" / "ssl_tls.c").is_file()
    assert not (out / "lib" / "mbedtls" / "tests").exists()  # only what the port compiles


def test_a_release_without_the_submodule_is_named(release):
    mp, _tls, _commit = release
    with pytest.raises(SystemExit, match="v9.9.9 has no submodule lib/micropython-lib"):
        mp_build.pinned(mp, "v9.9.9", "lib/micropython-lib")


def test_a_test_file_is_counted_on_the_interpreter_given(tmp_path):
    one_test = REPO / "tests" / "firmware" / "mp_test_epoch2000.py"
    assert mp_versions.run_file(micropython_cmd(), one_test) == (1, 0)
    not_micropython = tmp_path / "micropython"
    not_micropython.write_text("#!/bin/sh\nexit 1\n")
    not_micropython.chmod(0o755)
    assert mp_versions.run_file(not_micropython, one_test) == (0, 1)

