"""The firmware's pure modules (cron, tz, civil, sign) for property tests: imported under CPython
with a one-line stand-in for `micropython.const`, and run in batches on the real unix port."""
import json
import os
import subprocess
import sys
import types

from tools.paths import FIRMWARE, micropypath, micropython_cmd

MP_TIMEOUT_S = 60  # one micropython process checks a whole batch


def load(name):
    """wisp.<name> under CPython. cron/tz/civil use nothing MicroPython-only but `const`."""
    if "micropython" not in sys.modules:
        sys.modules["micropython"] = types.SimpleNamespace(const=lambda x: x)
    if str(FIRMWARE) not in sys.path:
        sys.path.append(str(FIRMWARE))  # appended: never shadows a CPython package
    __import__("wisp." + name)
    return sys.modules["wisp." + name]


def run_batch(tmp_path, script, cases):
    """Run `script` on the unix port with cases.json (one JSON value per line) in its cwd;
    returns its stdout lines, each parsed as JSON. One process for the whole batch."""
    # real UTF-8, not \u escapes: MicroPython's json turns an escaped surrogate pair into two
    # broken characters, where CPython's would give one
    text = "\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n"
    (tmp_path / "cases.json").write_text(text, encoding="utf-8")
    (tmp_path / "batch.py").write_text(script)
    proc = subprocess.run([micropython_cmd(), "batch.py"], cwd=tmp_path, capture_output=True, encoding="utf-8",
                          errors="backslashreplace", env=dict(os.environ, MICROPYPATH=micropypath()),
                          timeout=MP_TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError(f"micropython batch failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.split("\n") if line]  # not splitlines(): U+2028 etc.


def collect(strategy, n, seed_settings):
    """n examples drawn from a hypothesis strategy (for a batch run), without .example()'s warnings."""
    from hypothesis import given
    drawn = []

    @seed_settings
    @given(strategy)
    def draw(value):
        drawn.append(value)

    draw()
    return drawn[:n]
