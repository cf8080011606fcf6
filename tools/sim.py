"""Virtual devices: the real firmware on the MicroPython unix port, one process per device."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tools.paths import FIRMWARE, REPO, RUN_DIR, micropython_cmd

# The pins a new simulated device gets; any ESP32 board could be wired like this.
DEFAULT_PINS = {
    "porch_light": {"pin": 5, "mode": "out"},
    "fan": {"pin": 18, "mode": "out"},
    "heater": {"pin": 19, "mode": "out"},
    "door": {"pin": 4, "mode": "in", "pull": "up"},
}


def device_dir(dev_id, root=None):
    return Path(root or RUN_DIR / "devices") / dev_id


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
    romfs: a ROMFS image of the wisp package (tools/romfs.py), run in place as on a board."""
    firmware_dir = Path(firmware_dir or FIRMWARE)
    if romfs:
        cmd = [sys.executable, "-m", "tools.romfs", "run", str(romfs), str(heapsize or ""),
               str(firmware_dir / "main.py")]
        return subprocess.Popen(cmd, cwd=str(workdir), env=dict(os.environ, PYTHONPATH=str(REPO)),
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    cmd = [micropython_cmd()]
    if heapsize:
        cmd += ["-X", "heapsize=" + str(heapsize)]
    cmd.append(str(firmware_dir / "main.py"))
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(firmware_dir)]))
    return subprocess.Popen(cmd, cwd=str(workdir), env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr)
