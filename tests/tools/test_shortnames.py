"""Module-private names numbered at build time (tools/shortnames.py): fewer names interned for good
on the device, the same behaviour."""
import subprocess
import sys
from pathlib import Path

import pytest

from tools import constfold, image, shortnames
from tools.paths import FIRMWARE


def test_a_module_s_own_names_are_numbered_everywhere_it_uses_them():
    src = ("_TABLE = {'a': 1}\n"
           "def _look(k):\n"
           "    return _TABLE.get(k)\n"
           "class _Box:\n"
           "    pass\n"
           "def count(k):\n"
           "    global _TABLE\n"
           "    _TABLE = dict(_TABLE)\n"
           "    return _look(k), _Box()\n")
    assert shortnames.shorten(src, set()) == (
        "_0 = {'a': 1}\n"
        "def _1(k):\n"
        "    return _0.get(k)\n"
        "class _2:\n"
        "    pass\n"
        "def count(k):\n"
        "    global _0\n"
        "    _0 = dict(_0)\n"
        "    return _1(k), _2()\n")


@pytest.mark.parametrize("src, kept", [
    ("_seen = []\ndef f(o):\n    return o._seen\n", {"_seen"}),       # an attribute somewhere in the package
    ("def _helper():\n    pass\n", {"_helper"}),                      # imported by another module
    ("def _f():\n    pass\ndef g(_f=None):\n    return _f\n", set()),  # an argument of that name
    ("def _f():\n    pass\ndef g():\n    return [_f for _f in ()]\n", set()),  # bound in a comprehension
    ("def _f():\n    pass\ng(_f=1)\n", set()),                          # a keyword of a call
    ("def _f():\n    return 1\nx = f'{_f()}'\n", set()),                # inside an f-string
    ("_X = const(3)\ny = _X\n", set()),                                 # mpy-cross drops const names already
    ("_a = 1\n_0 = 2\n", set()),                                        # a numbered name in use: no clash
])
def test_names_others_can_see_are_kept(src, kept):
    assert shortnames.shorten(src, kept) == src


def test_attributes_and_strings_of_the_same_spelling_stay():
    src = "def _f(o):\n    return o._f, '_f'\nx = _f\n"
    assert shortnames.shorten(src, set()) == "def _0(o):\n    return o._f, '_f'\nx = _0\n"


def test_what_other_modules_reach_is_kept(tmp_path):
    (tmp_path / "a.py").write_text("from pkg.b import _shared\nx = obj._attr\ny = '_said'\n")
    kept = shortnames.package_kept(tmp_path, [])
    assert {"_shared", "_attr", "_said"} <= kept


def test_every_firmware_module_stays_free_of_undefined_names(tmp_path):
    # ruff's checks for undefined, redefined and unused names, on the source the build compiles
    consts = constfold.package_consts(FIRMWARE / "wisp")
    kept = shortnames.package_kept(FIRMWARE / "wisp", FIRMWARE.glob("*.py"), consts)
    shortened = 0
    for src in sorted((FIRMWARE / "wisp").rglob("*.py")):
        rel = src.relative_to(FIRMWARE).as_posix()
        text = constfold.module_source(src, rel, consts, kept) or src.read_text()
        out = tmp_path / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        shortened += shortnames.short_names(constfold.inline(src.read_text(), consts), kept) != {}
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select", "F821,F811,F823,F841",
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert shortened > 20


def test_release_images_intern_the_numbers_and_line_number_builds_the_names(tmp_path):
    release = image.stage_firmware(tmp_path / "release", march=None).root / "wisp" / "app.mpy"
    debug = image.stage_firmware(tmp_path / "debug", march=None, lines=True).root / "wisp" / "app.mpy"
    assert b"_router" not in release.read_bytes()
    assert b"_router" in debug.read_bytes()


def test_constants_every_user_got_as_numbers_are_numbered(tmp_path):
    (tmp_path / "limits.py").write_text("from micropython import const\nMAX = const(5)\nSHOWN = const(2)\n"
                                         "def f():\n    return MAX\n")
    (tmp_path / "user.py").write_text("from wisp import limits\nx = limits.MAX\ny = '%d' % limits.SHOWN\n"
                                       "z = getattr(limits, 'SHOWN')\n")
    consts = {"wisp.limits": {"MAX": 5, "SHOWN": 2}}
    kept = shortnames.package_kept(tmp_path, [], consts)
    assert "MAX" not in kept and "SHOWN" in kept  # SHOWN is still read by name, MAX only as its number
    boot = tmp_path.parent / "boot.py"  # stays source on the board: it reads limits.MAX by name
    boot.write_text("from wisp import limits\nprint(limits.MAX)\n")
    assert "MAX" in shortnames.package_kept(tmp_path, [boot], consts)
    source = (tmp_path / "limits.py").read_text()
    assert shortnames.shorten(source, kept) == (
        "from micropython import const\n_0 = const(5)\nSHOWN = const(2)\ndef f():\n    return _0\n")
    assert shortnames.shorten(source, shortnames.package_kept(tmp_path, [])) == source  # not inlined: read by name


def test_release_images_leave_the_limits_out_of_the_compiled_code(tmp_path):
    release = image.stage_firmware(tmp_path / "release", march=None).root / "wisp"
    debug = image.stage_firmware(tmp_path / "debug", march=None, lines=True).root / "wisp"
    for module, name in (("limits.mpy", b"MAX_PAYLOAD"), ("cron.mpy", b"MINUTE_MASK")):
        assert name not in (release / module).read_bytes()
        assert name in (debug / module).read_bytes()
    assert (release / "limits.mpy").stat().st_size < 100  # the module compiles to almost nothing


def test_the_map_names_what_a_release_traceback_shows(capsys):
    assert shortnames.main([str(FIRMWARE / "wisp" / "app.py")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.endswith(" _router") and " _" in line for line in lines)
