"""A virtual serial device: socat links a pseudo-terminal to `micropython -i` (through a supervisor),
so mpremote, `wisp deploy` and `wisp repl` talk to it as to a board on /dev/ttyUSB0. Its cwd is the
board's flash root.

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
BOOT_HOLD_S = 5.0           # longest wait for a starting interpreter to listen before input goes anyway
BOOT_POLL_S = 0.02
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
                end, found = can, -1
            out += self._pass(buf[pos:end])
            pos = end
            if found >= 0:
                self.raw = not self.raw
            self.binary = can >= 0
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
    console (socat's socket on stdin/stdout) to and from it until socat goes away.

    The interpreter needs a terminal: its REPL reads keys in raw mode, and a Ctrl-C byte must
    interrupt a running main.py (the pty's ISIG turns it into SIGINT, as a board's UART IRQ does).
    The pty does no output processing (no onlcr, no echo): Console does what a board's stdout does.
    One pty serves every start, so input the last interpreter did not read (mpremote's Ctrl-A sent
    right behind a soft reset's Ctrl-D) is read by the next one, as from a board's UART buffer."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))   # run the cleanup: the interpreter stops too
    signal.signal(signal.SIGHUP, lambda *a: sys.exit(0))
    # Ignored here and so in each interpreter until MicroPython sets its own Ctrl-C handler: the
    # unix port is a CPython wrapper, which a Ctrl-C during its start would kill (see listening()).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    micropython = os.environ.get("WISP_MICROPYTHON") or micropython_cmd()
    master, slave = pty.openpty()
    modes = termios.tcgetattr(slave)
    modes[1] &= ~termios.ONLCR
    modes[3] &= ~termios.ECHO
    os.set_blocking(master, False)
    pending = bytearray()   # console input not yet handed to the pty
    try:
        while True:
            cmd = [micropython, "-i"]
            if main and os.path.exists(main):
                cmd.append(main)
            termios.tcsetattr(slave, termios.TCSANOW, modes)   # a killed interpreter may leave raw mode
            if not run_interpreter(cmd, master, slave, pending):
                return
            pending[:0] = unread_input(slave)
            time.sleep(RESTART_PAUSE_S)
    except BrokenPipeError:
        return   # socat closed the console
    finally:
        os.close(master)   # hangs up the pty: an interpreter still on it gets SIGHUP


def run_interpreter(cmd, master, slave, pending):
    """Run `cmd` on the pty and relay until it exits (True) or the console closes (False).

    Input waits until the interpreter listens (see listening()), as a board's UART holds what
    arrives while it boots: mpremote's Ctrl-C then Ctrl-A, sent while the interpreter starts,
    still stop main.py and reach the raw REPL instead of killing the starting process."""
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    exited = os.pidfd_open(proc.pid)
    console = Console()
    boot_deadline = time.monotonic() + BOOT_HOLD_S
    booted = False
    try:
        while True:
            booted = booted or time.monotonic() > boot_deadline or listening(proc.pid, master)
            readers = [master, exited] + ([0] if len(pending) < INPUT_BACKLOG_BYTES else [])
            readable, writable, _ = select.select(readers, [master] if pending and booted else [], [],
                                                  None if booted else BOOT_POLL_S)
            if master in readable or exited in readable:
                relay_output(master, console, drain=exited in readable)
            if exited in readable:
                return True
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
        os.close(exited)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def unread_input(slave):
    """What an exited interpreter left unread on the pty (e.g. keys sent right behind a soft reset's
    Ctrl-D): it goes back in the queue for the next start, which gets it once it listens. Left on
    the pty, a Ctrl-C there would be a plain byte that a running main.py never reads."""
    modes = termios.tcgetattr(slave)
    modes[3] &= ~termios.ICANON
    modes[6][termios.VMIN], modes[6][termios.VTIME] = 0, 0   # a read returns what there is, or b""
    termios.tcsetattr(slave, termios.TCSANOW, modes)
    unread = b""
    while chunk := os.read(slave, RELAY_CHUNK_BYTES):
        unread += chunk
    return unread


def relay_output(master, console, drain):
    """One read, or with `drain` all there is: what an exited interpreter wrote last goes out
    before the next one starts (and gets a fresh Console)."""
    while True:
        try:
            data = os.read(master, RELAY_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        write_all(1, console.feed(data))
        if not (drain and data):
            return


def listening(pid, master):
    """Does the interpreter take console input yet? Its REPL does once it switches the pty out of
    canonical mode to read keys; main.py does once MicroPython catches SIGINT, so that a Ctrl-C
    interrupts it (before that, SIGINT is ignored, and a Ctrl-C would be lost)."""
    try:
        if not termios.tcgetattr(master)[3] & termios.ICANON:   # on Linux, the master reports the pty's modes
            return True
        with open(f"/proc/{pid}/status") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
    except (OSError, termios.error, StopIteration):
        return False   # it exited: the relay sees that too
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="supervisor inside a virtual device (started by tools.vdev.start)")
    parser.add_argument("--supervise", action="store_true", required=True)
    parser.add_argument("--main", help="script to run at each start when it exists")
    supervise(parser.parse_args().main)
