"""tools/frozen_manifest.py freezes the whole wisp package and wispboot, and nothing else of ours, on
top of the port's own frozen modules (asyncio, ntptime, dht), as MicroPython's manifest reader
resolves it (includes relative to the including file, read with the working directory at that file),
staged with the constants inlined as the .mpy and ROMFS builds compile them."""
import os
import re
from pathlib import Path

import pytest

from tools.paths import REPO

MANIFEST = REPO / "tools" / "frozen_manifest.py"


def read_manifest(path, asked=None):
    """Evaluate a manifest with the functions MicroPython's reader gives it; what it asks for."""
    asked = asked if asked is not None else {"include": [], "package": [], "module": []}

    def include(p, **kw):
        asked["include"].append(p)
        if not p.startswith("$("):  # the port's own manifests are not here
            read_manifest((path.parent / p).resolve(), asked)

    def package(name, files=None, base_path=".", opt=None):
        asked["package"].append((name, (path.parent / base_path).resolve(), opt))

    def module(name, base_path=".", opt=None):
        asked["module"].append((path.parent / base_path / name).resolve())

    before = os.getcwd()
    os.chdir(path.parent)
    try:
        exec(compile(path.read_text(), str(path), "exec"), {"include": include, "package": package, "module": module})
    finally:
        os.chdir(before)
    return asked


STAGED = (REPO / "build" / "frozen").resolve()


@pytest.fixture(scope="module")
def asked():
    return read_manifest(MANIFEST)  # stages the package into STAGED, as MicroPython's build would


def test_the_manifest_freezes_the_wisp_package_over_the_ports_own_modules(asked):
    assert asked["include"][0] == "$(PORT_DIR)/boards/manifest.py"  # keeps asyncio, ntptime, dht
    [(name, base, opt)] = asked["package"]
    assert (name, base) == ("wisp", STAGED)
    frozen = sorted(p.relative_to(base).as_posix() for p in (base / name).rglob("*.py"))
    assert "wisp/app.py" in frozen and "wisp/hal/esp32.py" in frozen
    assert not any(Path(p).name in ("boot.py", "main.py") for p in frozen)  # they stay on the filesystem


def test_wispboot_is_frozen_too_since_main_py_imports_it_first(asked):
    # A frozen board keeps only boot.py, main.py and config.json on its filesystem (docs/tools.md):
    # without wispboot frozen, main.py's first import fails and the board resets in a loop.
    assert asked["module"] == [STAGED / "wispboot.py"] and (STAGED / "wispboot.py").is_file()
    assert "import wispboot" in (REPO / "firmware" / "main.py").read_text()


def test_the_frozen_package_is_staged_with_its_constants_inlined(asked):
    # As in .mpy files: no module reads limits at run time, so wisp.limits never loads on the board
    uses = re.compile(r"\blimits\.[A-Z]")
    agent = (STAGED / "wisp" / "agent.py").read_text()
    assert uses.search((REPO / "firmware" / "wisp" / "agent.py").read_text())
    assert not uses.search(agent) and "class Agent" in agent
