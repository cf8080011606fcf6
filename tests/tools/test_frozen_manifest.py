"""tools/frozen_manifest.py freezes the whole wisp package, and only it, on top of the port's own
frozen modules (asyncio, ntptime, dht), as MicroPython's manifest reader resolves it."""
from pathlib import Path

from tools.paths import FIRMWARE, REPO

MANIFEST = REPO / "tools" / "frozen_manifest.py"


def read_manifest(path):
    """Evaluate a manifest with the functions MicroPython's reader gives it; what it asks for."""
    asked = {"include": [], "package": []}

    def include(p, **kw):
        asked["include"].append(p)

    def package(name, files=None, base_path=".", opt=None):
        asked["package"].append((name, (path.parent / base_path).resolve(), opt))

    exec(compile(path.read_text(), str(path), "exec"), {"include": include, "package": package})
    return asked


def test_the_manifest_freezes_the_wisp_package_over_the_ports_own_modules():
    asked = read_manifest(MANIFEST)
    assert asked["include"] == ["$(PORT_DIR)/boards/manifest.py"]  # keeps asyncio, ntptime, dht
    [(name, base, opt)] = asked["package"]
    assert (name, base) == ("wisp", FIRMWARE.resolve())
    frozen = sorted(p.relative_to(base).as_posix() for p in (base / name).rglob("*.py"))
    assert "wisp/app.py" in frozen and "wisp/hal/esp32.py" in frozen
    assert not any(Path(p).name in ("boot.py", "main.py") for p in frozen)  # they stay on the filesystem
