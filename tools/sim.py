"""Virtual devices: the real firmware on the MicroPython unix port, one process per device."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tools.paths import FIRMWARE, REPO, RUN_DIR, micropython_cmd

# The pins a new simulated device gets; any ESP32 board could be wired like this. Simulated
# relays do not wear out, so they switch as fast as asked (a board's outputs default to resting
# OUT_MIN_INTERVAL_MS between switches, docs/config.md).
DEFAULT_PINS = {
    "porch_light": {"pin": 26, "mode": "out", "aliases": ["porch lamp"], "min_interval_ms": 0},
    "fan": {"pin": 18, "mode": "out", "min_interval_ms": 0},
    "heater": {"pin": 19, "mode": "out", "min_interval_ms": 0},
    "door": {"pin": 4, "mode": "in", "pull": "up", "device_class": "door"},  # "is the door open?"
}


PID_FILE = ".sim.pid"   # in a flash root: the process running it (two would corrupt each other)
# How the firmware ends on the unix port when it resets (machine.reset on a board: the restart button,
# system_reboot, a fatal error, an update; wisp/hal/sim.py, wispboot.py): its launcher starts it again
RESET_EXIT = 3


class SimError(Exception):
    pass


class DeviceBusy(SimError):
    """The device is already running or online: the command was right, the moment not (exit 1, as
    `wisp run` for its device)."""


def device_dir(dev_id, root=None):
    return Path(root or RUN_DIR / "devices") / dev_id


def running_pid(workdir):
    """The pid of a live process running the device in `workdir`, or None."""
    try:
        pid = int((Path(workdir) / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def check_free(workdir, dev_id):
    """Refuse a second process on one flash root: both would write its files and knock each other
    off the broker (same client id) over and over."""
    pid = running_pid(workdir)
    if pid is not None:
        raise DeviceBusy(f"device '{dev_id}' is already running (pid {pid}, flash root {workdir}); "
                       f"stop it first, or pick another --id")


def mark_running(workdir, pid):
    (Path(workdir) / PID_FILE).write_text(str(pid))


def load_pins(path):
    """A pins file for `wisp sim --pins`: the "pins" object of a config.json, or a whole config.json."""
    from tools.jsonfile import JsonFileError, read_text
    try:
        data = json.loads(read_text(path, f"--pins {path}"))
    except JsonFileError as e:
        raise SimError(str(e)) from None
    except ValueError as e:
        raise SimError(f"--pins {path}: {e}") from None
    pins = data.get("pins", data) if isinstance(data, dict) else None
    if not isinstance(pins, dict):
        raise SimError(f"--pins {path} must hold a JSON object of pins, e.g. "
                       '{"fan": {"pin": 18, "mode": "out"}}')
    return pins


def write_config(workdir, dev_id, host, port, pins=None, extra=None):
    """The same config.json a real board keeps on its flash root."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = {"id": dev_id, "broker": {"host": host, "port": port},
           "pins": DEFAULT_PINS if pins is None else pins}
    cfg.update(extra or {})
    (workdir / "config.json").write_text(json.dumps(cfg, indent=1))
    return workdir / "config.json"


def start_device(workdir, heapsize=None, stdout=None, stderr=None, firmware_dir=None, romfs=None):
    """Run main.py with `workdir` as the flash root (config.json, state files). firmware_dir
    defaults to the firmware sources; a directory of compiled .mpy files works the same.
    romfs: a ROMFS image of the wisp package (tools/romfs.py), run in place as on a board.
    The device gets a process group of its own, so a Ctrl-C typed where it was started is not a
    user stopping it at a serial REPL (there is none): `wisp run` and `wisp sim` get it and stop
    their devices (SIGTERM)."""
    firmware_dir = Path(firmware_dir or FIRMWARE)
    if romfs:
        cmd = [sys.executable, "-m", "tools.romfs", "run", str(romfs), str(heapsize or ""),
               str(firmware_dir / "main.py")]
        return subprocess.Popen(cmd, cwd=str(workdir), env=dict(os.environ, PYTHONPATH=str(REPO)),
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, process_group=0)
    cmd = [micropython_cmd()]
    if heapsize:
        cmd += ["-X", "heapsize=" + str(heapsize)]
    cmd.append(str(firmware_dir / "main.py"))
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(firmware_dir)]))
    return subprocess.Popen(cmd, cwd=str(workdir), env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, process_group=0)
