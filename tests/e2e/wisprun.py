"""`wisp run` started as a user starts it, in its own run directory, with its output kept."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WISP = str(Path(sys.executable).parent / "wisp")
BANNER_TIMEOUT_S = 60.0


class WispRun:
    def __init__(self, run_dir, port, env=None, args=()):
        self.run_dir, self.port = Path(run_dir), port
        self.env = dict(os.environ, WISP_RUN_DIR=str(run_dir), **(env or {}))
        self.env.pop("WISP_BROKER", None)
        self.log_path = self.run_dir / "wisp-run.log"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([WISP, "run", "--port", str(port), *args], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=self.env)
        log.close()

    def output(self):
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text, timeout_s=BANNER_TIMEOUT_S, times=1):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.output().count(text) >= times:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"`wisp run` never printed {text!r}:\n{self.output()[-3000:]}")

    def dashboard_url(self):
        line = next(x for x in self.output().splitlines() if x.startswith("Dashboard:"))
        return line.split()[1].split("/#")[0]

    def wisp(self, *args, timeout=60):
        return subprocess.run([WISP, *args], capture_output=True, text=True, timeout=timeout, env=self.env)

    def bridge_pid(self):
        return self.child_pid(b"bridge")

    def child_pid(self, word):
        """The pid of this run's child process with `word` as its program or one of its arguments."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and (word in cmdline or cmdline[0].rsplit(b"/", 1)[-1] == word):
                return int(stat.parent.name)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
