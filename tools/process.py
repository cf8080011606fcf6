"""Ending a child process the host tools started (a broker, a bridge, Node-RED)."""
import subprocess


def end(proc, timeout_s=5.0):
    """SIGTERM, then SIGKILL if it has not exited within timeout_s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
