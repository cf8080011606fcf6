"""A simulated board for update tests: the real firmware on the MicroPython unix port, started again
whenever it exits (as a board reboots after machine.reset()), and whose power can be cut (SIGKILL)."""
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time

from tools import sim
from tools.paths import FIRMWARE, micropython_cmd

RESTART_PAUSE_S = 0.05


class Board:
    def __init__(self, stack, dev_id, key_hex, flash_kb=None, heapsize=None, firmware_dir=None, micropython=None):
        """flash_kb: the flash root is a tmpfs of this size (in a private mount namespace, set up
        again at each start, so only config.json survives a reboot): a small flash that fills up."""
        self.stack, self.id, self.flash_kb = stack, dev_id, flash_kb
        self.heapsize, self.firmware_dir, self.micropython = heapsize, firmware_dir, micropython
        self.workdir = stack.dir / "devices" / dev_id
        sim.write_config(self.workdir, dev_id, stack.broker.host, stack.broker.port, None, {"key": key_hex})
        self.boots = 0
        self.proc = None
        self._off = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._off:
            with self._lock:
                if self._off:
                    return
                log = open(self.workdir / "console.log", "ab")
                self.proc = self._start(log)
                log.close()
                self.boots += 1
            self.proc.wait()
            time.sleep(RESTART_PAUSE_S)

    def _start(self, log):
        if self.micropython:  # another interpreter, e.g. a 32-bit build that models the ESP32's heap
            firmware = self.firmware_dir or FIRMWARE
            cmd = [self.micropython] + (["-X", f"heapsize={self.heapsize}"] if self.heapsize else [])
            env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(firmware)]))
            return subprocess.Popen(cmd + [str(firmware / "main.py")], cwd=str(self.workdir), env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if not self.flash_kb:
            return sim.start_device(self.workdir, heapsize=self.heapsize, stdout=log, stderr=log,
                                    firmware_dir=self.firmware_dir)
        w, keep = shlex.quote(str(self.workdir)), shlex.quote(str(self.workdir) + ".keep")
        script = (f"cp {w}/config.json {keep} && mount -t tmpfs -o size={self.flash_kb}k tmpfs {w} && "
                  f"cp {keep} {w}/config.json && cd {w} && "
                  f"exec {shlex.quote(micropython_cmd())} {shlex.quote(str(FIRMWARE / 'main.py'))}")
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(FIRMWARE)]))
        return subprocess.Popen([shutil.which("unshare"), "--user", "--map-root-user", "--mount", "sh", "-c", script],
                                cwd=str(self.workdir), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def cut_power(self):
        """SIGKILL the running interpreter: it starts again at once, like a board whose power came back."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    def console(self):
        return (self.workdir / "console.log").read_text(errors="replace")

    def stop(self):
        with self._lock:
            self._off = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
        self._thread.join(5)
