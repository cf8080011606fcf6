"""Long strings of function bodies read back from flash (tools/flashtext.py): what moves, what stays,
and that the compiled firmware gets every string back unchanged on the real interpreter."""
import ast
import json
import shutil
import subprocess

import pytest

from tools import flashtext, image
from tools.paths import FIRMWARE, micropython_cmd

SOURCE = '''"""A module docstring long enough to move."""
HEADER = "a module-level string stays loaded anyway"


class Kept:
    LABEL = "a class-level string is evaluated once"

    def method(self):
        """A docstring is not compiled into anything."""
        return "a method's string moves to flash"


def outer(prefix="a default is evaluated at the def"):
    def inner():
        return "a nested function's string moves"
    return inner() + f"{prefix} in an f-string stays" + "short"
''' + '\n\ndef too_long():\n    return "%s"\n' % ("z" * (flashtext.LONGEST + 1))  # one block that size, read back


def remaining(source):
    return {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_strings_of_function_bodies_move_and_the_rest_stay():
    catalog = flashtext.Catalog()
    out = flashtext.move_strings(SOURCE, catalog)
    assert catalog.strings == ["a method's string moves to flash", "a nested function's string moves"]
    left = remaining(out)
    for kept in ("A module docstring long enough to move.", "a module-level string stays loaded anyway",
                 "a class-level string is evaluated once", "A docstring is not compiled into anything.",
                 "a default is evaluated at the def", " in an f-string stays", "short", "z" * (flashtext.LONGEST + 1)):
        assert kept in left
    assert "from wisp import flash_text as _S" in out and "_S(0)" in out and "_S(1)" in out


def test_a_module_without_long_strings_in_functions_is_left_as_it_is():
    src = 'X = "a module-level string stays loaded anyway"\n\ndef f():\n    return "short"\n'
    assert flashtext.move_strings(src, flashtext.Catalog()) == src


def test_a_module_using_the_reader_name_is_refused():
    with pytest.raises(flashtext.CatalogError, match="_S"):
        flashtext.move_strings('def f():\n    _S = 1\n    return "long enough to move"\n', flashtext.Catalog())


def test_a_build_with_such_a_module_says_which(tmp_path):
    (tmp_path / "wisp").mkdir()
    (tmp_path / "wisp" / "clash.py").write_text('def f():\n    _S = 1\n    return "long enough to move"\n')
    with pytest.raises(image.ImageError, match="clash.py"):
        image.stage_firmware(tmp_path / "root", march=None, firmware=tmp_path)


def test_catalog_file_is_offsets_then_utf8_text():
    catalog = flashtext.Catalog()
    assert [catalog.number(s) for s in ("first string", "22 °C outside", "first string")] == [0, 1, 0]
    blob = catalog.blob()
    offsets = [int.from_bytes(blob[i:i + 2], "little") for i in range(0, 6, 2)]
    assert offsets == [6, 18, 32]
    assert blob[offsets[1]:offsets[2]].decode() == "22 °C outside"


PROBE = """import json, wisp.demo as d
print(json.dumps([d.plain(), d.formatted(7), d.unicode(), d.nested()()]))
"""

DEMO = '''
def plain():
    return "a plain string long enough to move"


def formatted(n):
    return "%d items waiting in the queue" % n


def unicode():
    return "22 °C and falling, says the sensor"


def nested():
    def inner():
        return "read from flash inside a closure"
    return inner
'''


def test_compiled_modules_read_their_strings_back_on_micropython(tmp_path):
    firmware = tmp_path / "firmware"
    (firmware / "wisp").mkdir(parents=True)
    shutil.copyfile(FIRMWARE / "wisp" / "__init__.py", firmware / "wisp" / "__init__.py")
    (firmware / "wisp" / "demo.py").write_text(DEMO, encoding="utf-8")
    stage = image.stage_firmware(tmp_path / "root", march=None, firmware=firmware)
    assert flashtext.CATALOG in stage.files
    compiled = (stage.root / "wisp" / "demo.mpy").read_bytes()
    assert b"items waiting" not in compiled and "°C".encode() not in compiled
    assert b"items waiting" in (stage.root / flashtext.CATALOG).read_bytes()
    (stage.root / "probe.py").write_text(PROBE)
    done = subprocess.run([micropython_cmd(), "probe.py"], cwd=stage.root, capture_output=True, text=True,
                          env={"MICROPYPATH": ".frozen:"}, timeout=60)  # '': the flash root, as on a board
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout) == ["a plain string long enough to move", "7 items waiting in the queue",
                                       "22 °C and falling, says the sensor", "read from flash inside a closure"]


def test_lines_builds_keep_their_strings(tmp_path):
    stage = image.stage_firmware(tmp_path / "root", march=None, lines=True)
    assert flashtext.CATALOG not in stage.files
    assert b"reconnects keep failing" in (stage.root / "wisp" / "mqtt.mpy").read_bytes()
