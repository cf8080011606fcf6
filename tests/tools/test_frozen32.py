"""bench/frozen32.py builds the firmware frozen into the 32-bit builds from MicroPython's sources; where
they are missing, the heap bench says what it lacks instead of a figure, and measures the rest."""
import pytest

from bench import frozen32, heap_ratchet
from bench.esp32_heap import builds_dir


def test_without_sources_it_names_what_to_provide(monkeypatch, tmp_path):
    monkeypatch.delenv("WISP_MP_SRC", raising=False)
    assert "WISP_MP_SRC" in frozen32.missing()
    (tmp_path / "ports" / "unix").mkdir(parents=True)
    (tmp_path / "ports" / "unix" / "Makefile").write_text("")
    monkeypatch.setenv("WISP_MP_SRC", str(tmp_path))  # a tree without its submodules
    assert frozen32.source_dir() is None and "lib/mbedtls" in frozen32.missing()


def test_the_ratchet_reports_the_frozen_cases_unmeasured_without_sources(monkeypatch, capsys):
    monkeypatch.delenv("WISP_MP_SRC", raising=False)
    assert heap_ratchet.main(["--only", "frozen-tls"]) == 0
    out = capsys.readouterr().out
    if builds_dir():
        assert "session frozen with TLS not measured: no MicroPython v1.26.1 source tree" in out
    else:
        assert "heap ratchet skipped" in out


def test_the_unix_manifest_freezes_what_the_esp32_manifest_does(monkeypatch, tmp_path):
    # the port's own modules differ (unix: the standard variant's), wisp's are one file for both
    monkeypatch.setattr(frozen32, "source_dir", lambda: tmp_path)
    monkeypatch.setattr(frozen32, "_make", lambda src, args, log: None)
    (tmp_path / "mpy-cross" / "build").mkdir(parents=True)
    (tmp_path / "mpy-cross" / "build" / "mpy-cross").write_text("")
    builds = frozen32.build(tmp_path / "out", tmp_path)
    manifest = (tmp_path / "out" / "manifest.py").read_text()
    assert 'include("$(PORT_DIR)/variants/standard/manifest.py")' in manifest
    assert 'include("%s")' % frozen32.WISP_MANIFEST in manifest
    assert 'include("frozen_wisp.py")' in (frozen32.WISP_MANIFEST.parent / "frozen_manifest.py").read_text()
    assert sorted(builds) == ["plain", "tls"]


def test_a_failed_build_says_why_in_its_error(monkeypatch, tmp_path):
    src = tmp_path / "mp"
    (src / "ports" / "unix").mkdir(parents=True)
    (src / "ports" / "unix" / "Makefile").write_text("all:\n\t@echo 'gcc: error: no 32-bit libc'; exit 1\n")
    with pytest.raises(RuntimeError, match="make -C ports/unix") as failed:
        frozen32._make(src, ["-C", "ports/unix"], tmp_path / "unix.log")
    assert "no 32-bit libc" in str(failed.value)
