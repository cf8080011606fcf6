"""`wisp run` started as a user starts it, in its own run directory, with its output kept."""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

WISP = str(Path(sys.executable).parent / "wisp")
BANNER_TIMEOUT_S = 60.0


class WispRun:
    def __init__(self, run_dir, port, env=None, args=(), without_mosquitto=False):
        """without_mosquitto: run it as on a machine with no mosquitto installed (in a mount namespace
        where the broker's program is not there), where it falls back to the embedded amqtt broker."""
        self.run_dir, self.port = Path(run_dir), port
        self.env = dict(os.environ, WISP_RUN_DIR=str(run_dir), **(env or {}))
        self.env.pop("WISP_BROKER", None)
        self.log_path = self.run_dir / "wisp-run.log"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [WISP, "run", "--port", str(port), *args]
        if without_mosquitto:
            cmd = _without_mosquitto(cmd)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)
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
        """The pid of this run's child process with `word` as its program or one of its arguments (or
        their file names: amqtt runs as `python .../bin/amqtt`)."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and any(arg.rsplit(b"/", 1)[-1] == word for arg in cmdline):
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


def _without_mosquitto(cmd):
    """cmd run where every mosquitto program the wisp tools could find reads as not executable: /dev/null
    (not executable) mounted over each, in a mount namespace of its own (the machine keeps its broker)."""
    from tools.system_deps import SBIN_DIRS
    dirs = os.environ.get("PATH", "").split(os.pathsep) + list(SBIN_DIRS)
    found = sorted({str(Path(d) / "mosquitto") for d in dirs if d and (Path(d) / "mosquitto").is_file()})
    hide = "".join(f"mount --bind /dev/null {shlex.quote(p)} && " for p in found)
    return [shutil.which("unshare"), "--user", "--map-root-user", "--mount", "sh", "-c",
            hide + "exec " + " ".join(shlex.quote(c) for c in cmd)]
