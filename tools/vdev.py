"""A virtual serial device: socat links a pseudo-terminal to `micropython -i`, so mpremote, `wisp deploy`
and `wisp repl` talk to it as to a board on /dev/ttyUSB0. Its cwd is the board's flash root.

Like a board, it "reboots" on a soft reset: the unix port exits on Ctrl-D at the REPL, and a small
supervisor (this module run with --supervise) starts it again, running main.py when there is one.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.paths import REPO, micropython_cmd

READY_TIMEOUT_S = 5.0
RESTART_PAUSE_S = 0.1      # between an exit and the next start, so a crash loop cannot spin a core
STOP_TIMEOUT_S = 5.0
SOCAT_SPECIAL = set(",:!;'\"\\ ")  # characters socat's address syntax would split on


class VdevError(Exception):
    pass


def find_socat():
    found = shutil.which("socat")
    if not found:
        raise VdevError("socat is missing: run `python3 tools/system_deps.py --for test` "
                        "or `sudo apt-get install socat`")
    return found


class VirtualDevice:
    """A running virtual device: `tty` is the path to open, `workdir` its flash root."""

    def __init__(self, proc, tty, workdir, log_path):
        self.proc, self.tty, self.workdir, self.log_path = proc, str(tty), Path(workdir), log_path

    def stop(self):
        if self.proc.poll() is None:
            # socat's EXEC child is a session leader on its own pty: closing the pty hangs it up.
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(workdir, tty=None, main="main.py", pythonpath=()):
    """Start a virtual device whose flash root is `workdir`; its console appears at `tty`
    (default <workdir>/../<name>.tty). `main`: the script each start runs when it exists (None: bare
    REPL). `pythonpath`: extra MICROPYPATH entries after the flash root."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tty = Path(tty or workdir.parent / (workdir.name + ".tty")).absolute()
    supervisor = [sys.executable, "-m", "tools.vdev", "--supervise"] + (["--main", str(main)] if main else [])
    bad = [part for part in supervisor + [str(tty)] if set(part) & SOCAT_SPECIAL]
    if bad:
        raise VdevError(f"socat cannot take these paths (they hold one of {''.join(sorted(SOCAT_SPECIAL))}): {bad}")
    if tty.is_symlink() or tty.exists():
        tty.unlink()
    # PTY side: rawer = no echo, no line editing. EXEC side: setsid+ctty make the pty the
    # interpreter's terminal so a Ctrl-C byte interrupts a running main.py (as on a board's UART);
    # onlcr=0 keeps "\r\n" from becoming "\r\r\n", which mpremote's raw REPL would not recognise.
    cmd = [find_socat(), f"PTY,link={tty},rawer",
           "EXEC:" + " ".join(supervisor) + ",pty,setsid,ctty,stderr,echo=0,onlcr=0"]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", "", *map(str, pythonpath)]),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               WISP_MICROPYTHON=micropython_cmd())
    log_path = workdir.parent / (workdir.name + ".vdev.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=str(workdir), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not tty.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise VdevError(f"socat did not create {tty}; see {log_path}")
        time.sleep(0.01)
    return VirtualDevice(proc, tty, workdir, log_path)


def supervise(main):
    """Run the interpreter again whenever it exits, like a board after a soft reset."""
    signal.signal(signal.SIGINT, lambda *a: None)  # Ctrl-C is for the interpreter; it resets to default on exec
    micropython = os.environ.get("WISP_MICROPYTHON") or micropython_cmd()
    while True:
        cmd = [micropython, "-i"]
        if main and os.path.exists(main):
            cmd.append(main)
        subprocess.call(cmd)
        time.sleep(RESTART_PAUSE_S)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="supervisor inside a virtual device (started by tools.vdev.start)")
    parser.add_argument("--supervise", action="store_true", required=True)
    parser.add_argument("--main", help="script to run at each start when it exists")
    supervise(parser.parse_args().main)
