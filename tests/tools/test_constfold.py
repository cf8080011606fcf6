"""Limits inlined at build time (tools/constfold.py): the compiled firmware carries the numbers of
firmware/wisp/limits.py and never imports wisp.limits on the device."""
import subprocess

import pytest

from tools import constfold, image
from tools.paths import FIRMWARE, micropython_cmd

LIMITS = {"wisp.limits": {"MAX_PAYLOAD": 4096, "INBOX_MAX": 4}}


def test_each_use_becomes_its_number_and_the_import_goes():
    src = ("from wisp import limits, store\n"
           "def f(n):\n"
           "    return n > limits.MAX_PAYLOAD or n < -limits.INBOX_MAX\n")
    out = constfold.inline(src, LIMITS)
    assert out == ("from wisp import store\n"
                   "def f(n):\n"
                   "    return n > (4096) or n < -(4)\n")


def test_an_import_of_limits_alone_becomes_pass():
    out = constfold.inline("from wisp import limits\nX = limits.INBOX_MAX * 2\n", LIMITS)
    assert out == "pass\nX = (4) * 2\n"


def test_columns_count_bytes_of_non_ascii_text():
    src = 'from wisp import limits\nmsg = "é ü %d" % limits.INBOX_MAX; y = limits.MAX_PAYLOAD\n'
    assert constfold.inline(src, LIMITS) == 'pass\nmsg = "é ü %d" % (4); y = (4096)\n'


@pytest.mark.parametrize("src", [
    "from wisp import limits\nx = getattr(limits, 'INBOX_MAX')\n",       # the module itself passed on
    "from wisp import limits\nx = limits.NOT_A_LIMIT\n",                  # a name limits.py does not give
    "from wisp import limits\ndef f(limits):\n    return limits.INBOX_MAX\n",  # a local of that name
    "from wisp import limits\nx = f'{limits.INBOX_MAX} asks'\n",        # inside an f-string
])
def test_other_uses_keep_the_import(src):
    out = constfold.inline(src, LIMITS)
    assert out.startswith("from wisp import limits\n")
    if "NOT_A_LIMIT" in src:
        assert "limits.NOT_A_LIMIT" in out


def test_an_import_goes_only_from_the_scopes_left_without_a_use():
    consts = {"wisp.cron": {"KIND": 0, "AT": 2}}
    src = ("def add(p):\n"
           "    from wisp import cron, nextrun\n"
           "    return p[cron.KIND] == cron.AT and nextrun.first(p)\n"
           "def validate(spec):\n"
           "    from wisp import cron\n"
           "    return cron.parse(spec)[cron.KIND]\n")
    assert constfold.inline(src, consts) == (
        "def add(p):\n"
        "    from wisp import nextrun\n"
        "    return p[(0)] == (2) and nextrun.first(p)\n"
        "def validate(spec):\n"
        "    from wisp import cron\n"
        "    return cron.parse(spec)[(0)]\n")


def test_a_module_level_import_stays_for_a_function_that_uses_the_module():
    consts = {"wisp.cron": {"KIND": 0}}
    src = "from wisp import cron\nK = cron.KIND\ndef f(s):\n    return cron.parse(s)\n"
    assert constfold.inline(src, consts) == "from wisp import cron\nK = (0)\ndef f(s):\n    return cron.parse(s)\n"


def test_limits_are_read_from_the_const_lines():
    found = constfold.read_consts(FIRMWARE / "wisp" / "limits.py")
    assert found["MAX_PAYLOAD"] > 0 and found["INBOX_MAX"] > 0
    assert all(isinstance(v, int) for v in found.values())


def test_source_names_are_module_names():
    assert image.module_name("wisp/tools/gpio.py") == "wisp.tools.gpio"
    assert image.module_name("wisp/__init__.py") == "wisp"
    assert image.module_name("wispboot.py") == "wispboot"


PROBE = """
import sys
import wisp.nextrun
print("cron loaded" if "wisp.cron" in sys.modules else "cron not loaded")
import wisp.app, wisp.agent, wisp.answer, wisp.conversation, wisp.command, wisp.sched_edit
import wisp.routine_run, wisp.routine_check, wisp.memory, wisp.ota, wisp.ha_discovery, wisp.tools.manifest
print("limits loaded" if "wisp.limits" in sys.modules else "limits not loaded")
depth = %d  # limits.MAX_JSON_DEPTH, from limits.py
refuse = wisp.app.json_refusal
print(refuse(b"[" * depth + b"]" * depth), refuse(b"[" * (depth + 1) + b"]" * (depth + 1)))
"""


def test_staged_firmware_never_imports_limits_and_keeps_its_values(tmp_path):
    stage = image.stage_firmware(tmp_path / "root", march=None, simulator=True)
    probe = tmp_path / "probe.py"
    depth = constfold.read_consts(FIRMWARE / "wisp" / "limits.py")["MAX_JSON_DEPTH"]
    probe.write_text(PROBE % depth)
    done = subprocess.run([micropython_cmd(), str(probe)], cwd=tmp_path, capture_output=True, text=True,
                          env={"MICROPYPATH": ".frozen:%s" % stage.root}, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.split("\n")[:3] == ["cron not loaded", "limits not loaded",
                                           "None nested deeper than %d levels" % depth]


def test_update_bundles_fold_as_the_image_does(tmp_path):
    # a bundle writes the whole package before compiling any of it, so each module is folded against
    # every other, as in the image: the same bytes, module by module
    import hashlib

    from tools import otabundle
    stage = image.stage_firmware(tmp_path / "root")
    bundle = otabundle.build()
    compared = 0
    for path, _size, sha in bundle.files:
        if path != "wisp/__init__.mpy" and (stage.root / path).exists():  # the version is stamped there
            assert hashlib.sha256((stage.root / path).read_bytes()).hexdigest() == sha, path
            compared += 1
    assert compared > 40
