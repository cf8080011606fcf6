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
            raise sim.SimError(f"a device '{dev_id}' is already online on {host}:{port}; two devices with "
                               f"one id knock each other off the broker: pick another --id")
    devices = []  # (id, object with poll()/terminate()-like stop)
    try:
        for dev_id in ids:
            workdir = sim.device_dir(dev_id, root)
            sim.write_config(workdir, dev_id, host, port, pins)
            if console:
                v = vdev.start(workdir, main=str(FIRMWARE / "main.py"), pythonpath=[FIRMWARE])
                devices.append((dev_id, v.proc, v.stop))
                sim.mark_running(workdir, v.proc.pid)
                print(f"wisp: device '{dev_id}' on {host}:{port}, console {v.tty} "
                      f"(wisp repl --port {v.tty})", flush=True)
            else:
                proc = sim.start_device(workdir, heapsize=heapsize)
                devices.append((dev_id, proc, _stopper(proc)))
                sim.mark_running(workdir, proc.pid)
                print(f"wisp: device '{dev_id}' on {host}:{port}, flash root {workdir}", flush=True)
        print(f"wisp: {len(devices)} device(s) running; Ctrl-C stops them all", flush=True)
        return _wait(devices)
    finally:
        for _dev_id, _proc, stop in devices:
            stop()


def _stopper(proc):
    def stop():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except Exception:
                proc.kill()
                proc.wait()
    return stop


def _wait(devices):
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    signal.signal(signal.SIGHUP, lambda *a: stopping.append(True))   # its terminal closed: the devices go too
    try:
        while not stopping:
            for dev_id, proc, _stop in devices:
                if proc.poll() is not None:
                    print(f"wisp: device '{dev_id}' exited with code {proc.returncode}; stopping all", flush=True)
                    return 1
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print("\nwisp: stopping", flush=True)
    return 0
