"""A device config checked on the host by the firmware itself: its boot-time configuration step
(wisp.app.build: config, pins, inputs, sensors) runs on the MicroPython unix port in a scratch
flash root, and every `config error:` it reports comes back. Same rules as the board, one copy."""
import json
import subprocess
import tempfile
from pathlib import Path

from tools.paths import micropypath, micropython_cmd

CHECK_TIMEOUT_S = 30
_SCRIPT = "from wisp import app\napp.build('config.json')\n"
_MARK = "config error: "


class ConfigCheckError(Exception):
    pass


def device_errors(config):
    """The config errors the firmware would log at boot for `config` (a dict), as a list of text."""
    with tempfile.TemporaryDirectory(prefix="wisp-check-") as root:
        (Path(root) / "config.json").write_text(json.dumps(config))
        try:
            done = subprocess.run([micropython_cmd(), "-c", _SCRIPT], cwd=root, capture_output=True, text=True,
                                  timeout=CHECK_TIMEOUT_S, env={"MICROPYPATH": micropypath()})
        except subprocess.TimeoutExpired:
            raise ConfigCheckError(f"the firmware's config check did not finish within {CHECK_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ConfigCheckError(f"the firmware's config check failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return [line.split(_MARK, 1)[1] for line in done.stdout.splitlines() if _MARK in line]


def check(config, what="the config"):
    """Raise ConfigCheckError naming every error the device would report for `config`."""
    errors = device_errors(config)
    if errors:
        raise ConfigCheckError(f"{what} has what the device refuses at boot: " + "; ".join(errors))
