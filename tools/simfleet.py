"""`wisp sim`: one or several virtual devices at once; Ctrl-C or SIGTERM stops them all.

Each device is the real firmware on the MicroPython unix port with its flash root in .wisp/devices/<id>.
With --console it runs behind a virtual serial device (tools/vdev.py) whose PTY mpremote and
`wisp repl` can open, as they would a board's /dev/ttyUSB0.
"""
import signal
import time

from tools import sim, vdev
from tools.paths import FIRMWARE

MAX_COUNT = 50          # each device is a process with its own heap; more belongs in bench/
POLL_S = 0.2


def run_fleet(ids, host, port, heapsize=None, console=False, root=None, pins=None, online=()):
    """Start devices `ids` (each refused when its flash root is in use, or when `online`, the ids
    the broker reports online, has it) and wait; SIGTERM and Ctrl-C stop them all."""
    for dev_id in ids:
        sim.check_free(sim.device_dir(dev_id, root), dev_id)
        if dev_id in online:
            raise sim.DeviceBusy(f"a device '{dev_id}' is already online on {host}:{port}; two devices with "
                               f"one id knock each other off the broker: pick another --id")
    devices = []
    try:
        for dev_id in ids:
            workdir = sim.device_dir(dev_id, root)
            sim.write_config(workdir, dev_id, host, port, pins)
            if console:
                v = vdev.start(workdir, main=str(FIRMWARE / "main.py"), pythonpath=[FIRMWARE])
                devices.append(_Device(dev_id, v.proc, v.stop))    # its supervisor restarts it after a reset
                sim.mark_running(workdir, v.proc.pid)
                print(f"wisp: device '{dev_id}' on {host}:{port}, console {v.tty} "
                      f"(wisp repl --port {v.tty})", flush=True)
            else:
                def start(workdir=workdir):
                    proc = sim.start_device(workdir, heapsize=heapsize)
                    sim.mark_running(workdir, proc.pid)
                    return proc
                devices.append(_Device(dev_id, start(), start=start))
                print(f"wisp: device '{dev_id}' on {host}:{port}, flash root {workdir}", flush=True)
        print(f"wisp: {len(devices)} device(s) running; Ctrl-C stops them all", flush=True)
        return _wait(devices)
    finally:
        for device in devices:
            device.stop()


class _Device:
    """One device of the run. start(), when given, starts its process again after the firmware
    reset (a board reboots; the unix port exits with sim.RESET_EXIT)."""

    def __init__(self, dev_id, proc, stop=None, start=None):
        self.id, self.proc, self._stop, self.start = dev_id, proc, stop, start

    def stop(self):
        if self._stop is not None:
            self._stop()
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()

    def check(self):
        """True while it runs (started again after a reset); False once it has stopped otherwise."""
        code = self.proc.poll()
        if code is None:
            return True
        if code == sim.RESET_EXIT and self.start is not None:
            print(f"wisp: device '{self.id}' reset; starting it again, as a board boots", flush=True)
            self.proc = self.start()
            return True
        print(f"wisp: device '{self.id}' exited with code {code}; stopping all", flush=True)
        return False


def _wait(devices):
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    signal.signal(signal.SIGHUP, lambda *a: stopping.append(True))   # its terminal closed: the devices go too
    try:
        while not stopping:
            if not all(device.check() for device in devices):
                return 1
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print("\nwisp: stopping", flush=True)
    return 0
