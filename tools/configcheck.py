"""A device config checked on the host by the firmware itself: its boot-time configuration step
(wisp.app.build: config, pins, inputs, sensors, the broker's TLS CA) runs on the MicroPython unix
port in a scratch flash root, and every `config error:` and `warning:` it reports comes back. Same
rules as the board, one copy."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from tools.paths import micropypath, micropython_cmd

CHECK_TIMEOUT_S = 30
_SCRIPT = "from wisp import app\napp.build('config.json')\n"
_ERROR = "config error: "
_WARNING = "warning: "


class ConfigCheckError(Exception):
    pass


def config_files(config, folder):
    """{name on the board: file on this host} for the files `config` names on the device's flash
    (today the broker's CA, "ca"), each looked for in `folder`, the config file's own (for a
    provisioned device, devices/<id>/). The board opens the name from its flash root."""
    broker = config.get("broker") if isinstance(config, dict) else None
    ca = broker.get("ca") if isinstance(broker, dict) and broker.get("tls") else None
    if not isinstance(ca, str):
        return {}
    name = PurePosixPath(ca.lstrip("/"))
    if not name.parts or ".." in name.parts:
        raise ConfigCheckError(f"broker.ca {ca!r} must name a file on the device's flash, e.g. \"ca.der\"")
    path = Path(folder) / name
    if not path.is_file():
        raise ConfigCheckError(f"broker.ca {ca!r}: no such file {path} (the CA certificate is taken from the "
                               f"config file's folder and copied to the board)")
    return {name.as_posix(): path}


def device_report(config, files=None):
    """(errors, warnings) the firmware would log at boot for `config` (a dict), as lists of text.
    files: what config_files found, put in the scratch flash root as on the board."""
    with tempfile.TemporaryDirectory(prefix="wisp-check-") as root:
        (Path(root) / "config.json").write_text(json.dumps(config))
        for name, src in (files or {}).items():
            (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, Path(root) / name)
        try:
            done = subprocess.run([micropython_cmd(), "-c", _SCRIPT], cwd=root, capture_output=True, text=True,
                                  timeout=CHECK_TIMEOUT_S, env={"MICROPYPATH": micropypath()})
        except subprocess.TimeoutExpired:
            raise ConfigCheckError(f"the firmware's config check did not finish within {CHECK_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ConfigCheckError(f"the firmware's config check failed: {(done.stderr or done.stdout).strip()[-400:]}")
    lines = done.stdout.splitlines()
    return ([line.split(_ERROR, 1)[1] for line in lines if _ERROR in line],
            [line.split(_WARNING, 1)[1] for line in lines if _WARNING in line])


def device_errors(config, files=None):
    """The config errors the firmware would log at boot for `config`, as a list of text."""
    return device_report(config, files)[0]


def _print_warning(what, text):
    print(f"wisp: {what}: warning: {text}", file=sys.stderr)


def check(config, what="the config", files=None, warn=_print_warning):
    """Raise ConfigCheckError naming every error the device would report for `config`; pass each
    warning (the device starts, but says so at boot, e.g. a strapping pin) to warn(what, text)."""
    errors, warnings = device_report(config, files)
    if errors:
        raise ConfigCheckError(f"{what} has what the device refuses at boot: " + "; ".join(errors))
    for text in warnings:
        warn(what, text)
