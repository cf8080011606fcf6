"""A virtual serial device: socat links a pseudo-terminal to `micropython -i`, so mpremote, `wisp deploy`
and `wisp repl` talk to it as to a board on /dev/ttyUSB0. Its cwd is the board's flash root.

Like a board, it "reboots" on a soft reset: the unix port exits on Ctrl-D at the REPL, and a small
supervisor (this module run with --supervise) starts it again, running main.py when there is one.
The supervisor also relays the console, so that it reads like a board's: see Console.
"""
import argparse
import fcntl
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

from tools.paths import REPO, micropython_cmd

READY_TIMEOUT_S = 5.0
RESTART_PAUSE_S = 0.1      # between an exit and the next start, so a crash loop cannot spin a core
STOP_TIMEOUT_S = 5.0
RELAY_CHUNK_BYTES = 4096
INPUT_BACKLOG_BYTES = 4096  # console input the interpreter has not taken yet; more waits in socat
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
    # PTY side: rawer = no echo, no line editing: bytes pass as on a UART. EXEC side: a plain socket
    # pair, no line discipline: the supervisor owns the interpreter's terminal and the console's
    # line endings (see Console). setsid keeps a Ctrl-C typed where socat was started away from it;
    # the supervisor's own errors go to the log, not into the console's byte stream.
    cmd = [find_socat(), f"PTY,link={tty},rawer", "EXEC:" + " ".join(supervisor) + ",setsid"]
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


class Console:
    """The interpreter's output as a board's console shows it.

    On a board, print() goes through MicroPython's cooked stdout, which sends each "\n" as "\r\n";
    the unix port leaves that to the terminal's onlcr. onlcr cannot be used here: it also turns
    the "\r\n" the REPL already writes into "\r\r\n", and mpremote then never recognises the raw
    REPL. So a lone "\n" becomes "\r\n" and a "\r\n" stays as it is: what a board sends.

    Two kinds of traffic pass untouched, because a byte-level rewrite would corrupt them: the raw
    REPL (mpremote's exec/cp/fs protocol, where sys.stdout.buffer may carry binary; mpremote does
    not need "\r\n" there), and everything after a CAN byte (0x18), which starts mpremote mount's
    binary protocol, until the interpreter restarts. Both are told from the interpreter's own
    banners in the output, never from guesses about the input."""

    RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"          # entering the raw REPL
    FRIENDLY_BANNER = b'Type "help()" for more information.\r\n'  # back at the friendly REPL
    CAN = b"\x18"

    def __init__(self):
        self.raw = False        # in the raw REPL
        self.binary = False     # mpremote mount is talking: pass everything until the restart
        self.after_cr = False   # the last byte relayed was "\r" (a "\r\n" may straddle two reads)
        self.tail = b""         # the end of the last read, for a banner split across two reads

    def feed(self, data):
        """The bytes to send to the console for `data` read from the interpreter."""
        buf = self.tail + data
        pos, out = len(self.tail), bytearray()
        while pos < len(buf) and not self.binary:
            banner = self.FRIENDLY_BANNER if self.raw else self.RAW_BANNER
            found = buf.find(banner, max(0, pos - len(banner) + 1))  # the first one ending past pos
            end = found + len(banner) if found >= 0 else len(buf)
            can = buf.find(self.CAN, pos, end)
            if can >= 0:
                end, found, self.binary = can, -1, True
            out += self._pass(buf[pos:end])
            pos = end
            if found >= 0:
                self.raw = not self.raw
        out += self._pass(buf[pos:])
        self.tail = buf[-len(self.FRIENDLY_BANNER):]
        return bytes(out)

    def _pass(self, chunk):
        if not chunk:
            return chunk
        cooked = chunk
        if not (self.raw or self.binary):
            cooked = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if self.after_cr and chunk[:1] == b"\n":
                cooked = cooked[1:]   # its "\r" went out with the previous read
        self.after_cr = chunk[-1:] == b"\r"
        return cooked


def supervise(main):
    """Run the interpreter again whenever it exits, like a board after a soft reset, relaying the
    console (socat's socket on stdin/stdout) to and from it until socat goes away."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))   # run the cleanup: the interpreter stops too
    signal.signal(signal.SIGHUP, lambda *a: sys.exit(0))
    micropython = os.environ.get("WISP_MICROPYTHON") or micropython_cmd()
    pending = bytearray()   # typed while the interpreter restarts: the next one reads it, as on a UART
    try:
        while True:
            cmd = [micropython, "-i"]
            if main and os.path.exists(main):
                cmd.append(main)
            if not run_interpreter(cmd, pending):
                return
            time.sleep(RESTART_PAUSE_S)
    except BrokenPipeError:
        return   # socat closed the console


def run_interpreter(cmd, pending):
    """Run `cmd` on a pty of its own and relay until it exits (True) or the console closes (False).

    The interpreter needs a terminal: its REPL reads keys in raw mode, and a Ctrl-C byte must
    interrupt a running main.py (the pty's ISIG turns it into SIGINT, as a board's UART IRQ does).
    The pty does no output processing (no onlcr, no echo): Console does what a board's stdout does."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    os.set_blocking(master, False)
    console = Console()
    try:
        while True:
            readers = [master] + ([0] if len(pending) < INPUT_BACKLOG_BYTES else [])
            readable, writable, _ = select.select(readers, [master] if pending else [], [])
            if master in readable:
                try:
                    data = os.read(master, RELAY_CHUNK_BYTES)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:   # EIO: the interpreter exited and its terminal closed
                    data = b""
                if data == b"":
                    return True
                if data:
                    write_all(1, console.feed(data))
            if master in writable:
                try:
                    del pending[:os.write(master, pending)]
                except BlockingIOError:
                    pass
            if 0 in readable:
                data = os.read(0, RELAY_CHUNK_BYTES)
                if not data:
                    return False
                pending += data
    finally:
        os.close(master)   # hangs up the interpreter's terminal
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="supervisor inside a virtual device (started by tools.vdev.start)")
    parser.add_argument("--supervise", action="store_true", required=True)
    parser.add_argument("--main", help="script to run at each start when it exists")
    supervise(parser.parse_args().main)
