"""Collect tests/firmware/mp_test_*.py and run them on the real MicroPython unix port.

Each file runs once in its own micropython process (cwd: a fresh temp dir); each of its test_*
functions becomes one pytest item and runs in its own empty directory under it, the device's
flash root (tests/firmware/mprunner.py). Shared checks: mpcheck.py; the device builder:
fakeboard.make_device. A file that
mentions WISP_TEST_BROKER gets the run's mosquitto as host:port in that variable.
"""
import ast
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import session_broker
from tools.paths import micropypath, micropython_cmd

HERE = Path(__file__).parent
FILE_TIMEOUT_S = 120


class MicroPythonFailure(Exception):
    pass


def pytest_collect_file(parent, file_path):
    # A file named on the command line is collected by pytest's python plugin instead, which
    # asks pytest_pycollect_makemodule below: collecting it here too would run it twice.
    if file_path.name.startswith("mp_test_") and file_path.suffix == ".py" \
            and not parent.session.isinitpath(file_path):
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name.startswith("mp_test_"):
        return MicroPythonFile.from_parent(parent, path=module_path)
    return None


def run_micropython_tests(path):
    """Run one mp_test file; return ({name: (ok, detail)}, raw output)."""
    source = path.read_text()
    env = dict(os.environ, MICROPYPATH=micropypath(HERE))
    if "WISP_TEST_BROKER" in source:
        b = session_broker()
        env["WISP_TEST_BROKER"] = f"{b.host}:{b.port}"
    with tempfile.TemporaryDirectory(prefix="wisp-flash-") as flash_root:
        try:
            done = subprocess.run([micropython_cmd(), str(HERE / "mprunner.py"), path.stem], cwd=flash_root,
                                  env=env, capture_output=True, text=True, timeout=FILE_TIMEOUT_S)
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode(errors="replace") + f"\n[timed out after {FILE_TIMEOUT_S} s]"
    results, failing, lines = {}, None, []
    for line in output.splitlines():
        if line.startswith("@@PASS "):
            results[line.split()[1]] = (True, "")
        elif line.startswith("@@FAIL "):
            failing, lines = line.split()[1], []
        elif line == "@@END" and failing:
            results[failing] = (False, "\n".join(lines))
            failing = None
        elif failing:
            lines.append(line)
    return results, output


class MicroPythonFile(pytest.File):
    _results = None

    def collect(self):
        tree = ast.parse(self.path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=node.name)

    def results(self):
        if self._results is None:
            self._results = run_micropython_tests(self.path)
        return self._results


class MicroPythonItem(pytest.Item):
    def runtest(self):
        results, output = self.parent.results()
        if self.name not in results:
            raise MicroPythonFailure(f"{self.name} did not run on MicroPython; output:\n{output[-3000:]}")
        ok, detail = results[self.name]
        if not ok:
            raise MicroPythonFailure(detail)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MicroPythonFailure):
            return f"MicroPython: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"micropython: {self.name}"
