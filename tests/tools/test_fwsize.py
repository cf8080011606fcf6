"""The firmware size ratchet: a real mpy-cross compile of the firmware, judged against limits just below
and at its total, and the limit the repo keeps."""
import pytest

from tools import fwsize
from tools.image import ImageError


@pytest.fixture(scope="module")
def total():
    return fwsize.mpy_total()


def test_total_is_a_real_compile(total):
    # every module compiles to a few hundred bytes at least; a broken compile would raise, not return 0
    modules = list((fwsize.FIRMWARE / "wisp").rglob("*.py"))
    assert total > 200 * len(modules)


def test_a_limit_below_the_total_fails(total):
    ok, line = fwsize.verdict(total, total - 1)
    assert not ok
    assert f"{total} bytes" in line and "grew 1 bytes past its limit" in line


def test_a_limit_at_or_above_the_total_passes(total):
    assert fwsize.verdict(total, total)[0]
    ok, line = fwsize.verdict(total, total + 1000)
    assert ok and "grew" not in line


def test_main_exit_code_follows_the_limit(tmp_path, capsys):
    (tmp_path / "wisp").mkdir()
    (tmp_path / "wisp" / "a.py").write_text("def f(x):\n    return x + 1\n")
    small = fwsize.mpy_total(tmp_path)
    assert fwsize.main(["--firmware", str(tmp_path), "--limit", str(small)]) == 0
    assert f"{small} bytes" in capsys.readouterr().out
    (tmp_path / "wisp" / "b.py").write_text('def g():\n    return "a string the build moves to flash"\n')
    total, strings = fwsize.measure(tmp_path)
    assert strings == 2 * 2 + len("a string the build moves to flash")  # two offsets, then the text
    assert fwsize.main(["--firmware", str(tmp_path), "--limit", str(total)]) == 0
    assert f"beside it {strings} bytes of strings read from flash" in capsys.readouterr().out
    assert fwsize.main(["--firmware", str(tmp_path), "--limit", str(small - 1)]) == 1
    assert "past its limit" in capsys.readouterr().err


def test_a_module_that_does_not_compile_fails_loudly(tmp_path):
    (tmp_path / "wisp").mkdir()
    (tmp_path / "wisp" / "bad.py").write_text("def f(:\n")
    with pytest.raises(ImageError, match="bad.py"):
        fwsize.mpy_total(tmp_path)


def test_the_repo_keeps_a_limit_between_the_goal_and_a_sane_ceiling():
    assert fwsize.GOAL_BYTES <= fwsize.limit_bytes() < 256 * 1024
