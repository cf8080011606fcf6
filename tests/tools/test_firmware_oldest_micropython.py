"""The firmware runs on MicroPython 1.23 (firmware/main.py refuses older), but `make test` runs it on a
newer unix port, which accepts some calls 1.23 and 1.24 raise on. This catches those in the source;
bench/mp_versions.py runs the firmware tests on an old build itself (docs/benchmarks.md)."""
import ast

from tools.paths import FIRMWARE


def too_new_calls(source):
    """(line, text) of each str.startswith/endswith call MicroPython before 1.25 raises on: a tuple
    of prefixes (TypeError: can't convert 'tuple' object to str implicitly), or start/end indices
    that 1.23 and 1.24 do not take."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("startswith", "endswith"):
            first_only = 2 if node.func.attr == "startswith" else 1  # startswith(prefix, start) is old
            if node.args and isinstance(node.args[0], ast.Tuple) or len(node.args) > first_only:
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_check_finds_what_older_micropython_refuses():
    assert [n for n, _ in too_new_calls('u.startswith(("http://", "https://"))\nu.endswith("x", 2)')] == [1, 2]
    assert too_new_calls('u.startswith("http://") or u.startswith("a", 1)\nu.endswith(b"\\n")') == []


def test_firmware_makes_no_str_call_micropython_1_23_refuses():
    found = [f"{p.relative_to(FIRMWARE)}:{line}: {text}" for p in sorted(FIRMWARE.rglob("*.py"))
             for line, text in too_new_calls(p.read_text())]
    assert not found, "MicroPython 1.23 and 1.24 raise on these (write a or b, not a tuple):\n" + "\n".join(found)
