"""`wisp repl`: the board's (or a virtual device's) serial REPL through mpremote.

Attaching leaves the agent running; a Ctrl-C the user types stops it, and the firmware then drops its
broker link so its status turns offline at once. When the user leaves, a soft reset (Ctrl-D) boots
the agent again, unless the user asked to stay (`--stay`: the board waits at its REPL)."""
import os
import stat
import subprocess
import sys
import time

EXEC_TIMEOUT_S = 30
RESET_SETTLE_S = 0.2         # let the friendly REPL print its prompt before Ctrl-D


class ConsoleError(Exception):
    pass


def repl_cmd(port):
    # `resume`: attach without the soft reset mpremote would otherwise send (it would end a virtual device).
    return [sys.executable, "-m", "mpremote", "connect", port, "resume", "repl"]


def check_port(port):
    if port.startswith("/dev/") or os.sep in port:
        if not os.path.exists(port):
            raise FileNotFoundError(f"no serial port {port}: is the board plugged in? "
                                    "(`ls /dev/ttyUSB* /dev/ttyACM*` lists candidates)")
        if not stat.S_ISCHR(os.stat(port).st_mode):
            kind = "a directory" if os.path.isdir(port) else "a file"
            raise ConsoleError(f"{port} is {kind}, not a serial port (e.g. /dev/ttyUSB0, or a virtual device's "
                               ".wisp/devices/<id>.tty)")


def interactive(port, resume=True):
    """Hand the terminal to mpremote's REPL; Ctrl-] leaves it (and restarts the agent if `resume`)."""
    check_port(port)
    if not sys.stdin.isatty():   # mpremote would die in termios on a pipe or /dev/null
        raise ConsoleError("`wisp repl` needs a terminal (its input is not one); from a script, run code "
                           "with `--exec CODE`")
    then = "the agent restarts when you leave" if resume else "the agent stays stopped (--stay)"
    print(f"wisp: REPL on {port}; Ctrl-C stops the running agent, Ctrl-D soft-resets, Ctrl-] leaves; {then}",
          file=sys.stderr, flush=True)
    rc = subprocess.call(repl_cmd(port))
    if resume:
        soft_reset(port)
    return rc


def run_code(port, code, timeout=EXEC_TIMEOUT_S, resume=True):
    """Run `code` on the board and return (exit code, its printed output: an exception the code
    raised on the board included); then restart the agent with a soft reset, if `resume`. Raises
    ConsoleError, one line, when mpremote itself fails (nothing answers on the port)."""
    check_port(port)
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", "exec", code]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        # no soft reset either: whatever is on the port does not answer, and that error would hide this one
        raise ConsoleError(f"no answer from {port} within {timeout} s: is a MicroPython board on it?") from None
    # the board's own output (a traceback of the code included) comes on stdout; mpremote's
    # traceback on stderr is about the port: its last line says what went wrong
    err = done.stderr.strip().splitlines()
    if done.returncode != 0 and err:
        raise ConsoleError(f"mpremote on {port} failed: {err[-1]} (is a MicroPython board on it?)")
    if resume:
        soft_reset(port)
    return done.returncode, done.stdout


def soft_reset(port):
    """Ctrl-B (leave raw REPL) then Ctrl-D at the friendly REPL: the board reboots into main.py."""
    import serial  # pyserial comes with mpremote and esptool
    try:
        with serial.Serial(port, 115200, timeout=1) as s:
            s.write(b"\r\x02")
            time.sleep(RESET_SETTLE_S)
            s.write(b"\x04")
            s.flush()
            time.sleep(RESET_SETTLE_S)
    except serial.SerialException as e:
        raise ConsoleError(f"could not soft-reset the board on {port}: {e}") from None
