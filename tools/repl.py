"""`wisp repl`: the board's (or a virtual device's) serial REPL through mpremote."""
import os
import subprocess
import sys

EXEC_TIMEOUT_S = 30


def repl_cmd(port):
    # `resume`: attach without the soft reset mpremote would otherwise send (it would end a virtual device).
    return [sys.executable, "-m", "mpremote", "connect", port, "resume", "repl"]


def check_port(port):
    if port.startswith("/dev/") or os.sep in port:
        if not os.path.exists(port):
            raise FileNotFoundError(f"no serial port {port}: is the board plugged in? "
                                    "(`ls /dev/ttyUSB* /dev/ttyACM*` lists candidates)")


def interactive(port):
    """Hand the terminal to mpremote's REPL; Ctrl-] leaves it."""
    check_port(port)
    print(f"wisp: REPL on {port}; Ctrl-C stops the running program, Ctrl-D soft-resets, Ctrl-] leaves",
          file=sys.stderr, flush=True)
    return subprocess.call(repl_cmd(port))


def run_code(port, code, timeout=EXEC_TIMEOUT_S):
    """Run `code` on the board and return (exit code, its printed output)."""
    check_port(port)
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", "exec", code]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, f"no answer from {port} within {timeout} s"
    return done.returncode, done.stdout if done.returncode == 0 else (done.stdout + done.stderr)
