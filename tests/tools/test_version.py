"""One version: pyproject.toml's is the source; the firmware (which reports it as `fw` in its status,
manifest and system_info) and the newest CHANGELOG.md release must say the same."""
import ast
import re
import tomllib

from tools.paths import FIRMWARE, REPO


def pyproject_version():
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def firmware_version():
    """wisp.VERSION, read without importing the firmware (it is MicroPython code)."""
    tree = ast.parse((FIRMWARE / "wisp" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "VERSION" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("firmware/wisp/__init__.py has no VERSION = '...'")


def newest_changelog_release():
    for line in (REPO / "CHANGELOG.md").read_text().splitlines():
        m = re.match(r"## \[(\d[^\]]*)\]", line)  # "## [Unreleased]" is skipped: it starts with no digit
        if m:
            return m.group(1)
    raise AssertionError("CHANGELOG.md has no '## [x.y.z] - date' release heading")


def test_firmware_reports_the_package_version():
    assert firmware_version() == pyproject_version(), \
        "bump VERSION in firmware/wisp/__init__.py together with pyproject.toml"


def test_changelog_names_the_current_version():
    assert newest_changelog_release() == pyproject_version(), \
        "a version bump gets its '## [x.y.z] - date' section in CHANGELOG.md"
