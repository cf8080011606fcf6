"""A command run as a user runs it in a terminal: the foreground job of a pseudo-terminal, so the keys
a test types reach it as typed (Ctrl-C is the terminal's SIGINT to the whole foreground process group,
not a signal sent to one process) and closing the terminal hangs it up."""
import fcntl
import os
import pty
import select
import signal
import subprocess
import termios
import time

READ_TIMEOUT_S = 10.0


def _foreground_job():
    signal.signal(signal.SIGINT, signal.SIG_DFL)    # a shell's job gets Ctrl-C even when pytest's parent ignores it
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)           # the pty is its controlling terminal


class Terminal:
    def __init__(self, cmd, env=None, cwd=None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True, preexec_fn=_foreground_job)
        os.close(slave)
        self.seen = b""          # everything the command wrote so far
        self._read_to = 0        # how far read_until has looked

    def type(self, keys):
        os.write(self.master, keys.encode() if isinstance(keys, str) else keys)

    def read_until(self, marker, timeout=READ_TIMEOUT_S):
        """The output after the last read_until up to and including `marker`; TimeoutError shows the tail."""
        marker = marker.encode() if isinstance(marker, str) else marker
        deadline = time.monotonic() + timeout
        while (found := self.seen.find(marker, self._read_to)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise TimeoutError(f"{marker!r} not seen; the terminal shows:\n{self.text(self.seen[-1500:])}")
        start, self._read_to = self._read_to, found + len(marker)
        return self.text(self.seen[start:self._read_to])

    def read_for(self, seconds):
        """Whatever comes within `seconds` (a check that something does not come)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and self._read(left):
            pass
        start, self._read_to = self._read_to, len(self.seen)
        return self.text(self.seen[start:])

    def _read(self, timeout):
        if not select.select([self.master], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError:          # EIO: every process has let go of the terminal
            data = b""
        self.seen += data
        return bool(data)

    def wait(self, timeout=20.0):
        """The exit code, reading the output meanwhile (a full pty would block the command)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"still running after {timeout} s:\n{self.text(self.seen[-1500:])}")
            self._read(0.1)
        return self.proc.returncode

    def hang_up(self):
        """The terminal window is closed."""
        os.close(self.master)
        self.master = None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master is not None:
            os.close(self.master)
            self.master = None

    @staticmethod
    def text(data):
        return data.decode(errors="replace").replace("\r\n", "\n")
