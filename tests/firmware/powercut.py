"""A MicroPython process that writes state in a loop and prints what it did, for tests that
cut its power (SIGKILL) at random moments. Protocol of the script it runs: "STATE <json>" once
at start (what a fresh interpreter loaded), then "OK <n>" after each completed write n."""
import json
import os
import signal
import subprocess
import threading

from tools.paths import micropypath, micropython_cmd


class Writer:
    def __init__(self, flash, script):
        env = dict(os.environ, MICROPYPATH=micropypath())
        self.proc = subprocess.Popen([micropython_cmd(), str(script)], cwd=flash, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.started = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:  # drained all along, so a full pipe never pauses the writer
            if not line.endswith("\n"):
                break  # killed mid-print: a half line ("OK " with no number yet) tells nothing
            self.lines.append(line.rstrip("\n"))
            if line.startswith("STATE"):
                self.started.set()
        self.started.set()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        self.reader.join(5)

    def state(self):
        for line in self.lines:
            if line.startswith("STATE "):
                return json.loads(line[6:])
        raise AssertionError("writer printed no state:\n" + "\n".join(self.lines[-20:]))

    def confirmed(self):
        done = [int(line.split()[1]) for line in self.lines if line.startswith("OK ")]
        return max(done) if done else None
