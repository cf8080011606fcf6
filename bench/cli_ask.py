"""Wall time of `wisp ask` on the fast path, as a user at a shell feels it: the whole CLI process
(Python start, connect, status, ask, reply, disconnect) and, to split that up, the same ask from
an already-running Python (tools.ask.ask: connect to disconnect). Prints and records p50/p90/p99
over 50 calls each, one run, plus the device's own `ms` for comparison."""
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import percentile, write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tools.ask import ask  # noqa: E402
from tools.image import stage_firmware  # noqa: E402
from tools.paths import REPO  # noqa: E402

CALLS = 50
WARMUP = 3
FAST_ASK = "turn on the fan"
WISP = str(Path(sys.executable).parent / "wisp")


def cli_calls(stack):
    wall = []
    for i in range(WARMUP + CALLS):
        t0 = time.perf_counter()
        done = subprocess.run([WISP, "ask", "bench1", FAST_ASK, "--broker", stack.broker_addr],
                              cwd=str(REPO), capture_output=True, text=True, timeout=60)
        elapsed = (time.perf_counter() - t0) * 1000
        if done.returncode != 0 or "[device, " not in done.stdout:
            raise SystemExit(f"wisp ask failed: {done.stdout}{done.stderr}")
        if i >= WARMUP:
            wall.append(elapsed)
    return wall


def in_process_calls(stack):
    wall, device = [], []
    for i in range(WARMUP + CALLS):
        t0 = time.perf_counter()
        reply = ask(stack.broker.host, stack.broker.port, "bench1", FAST_ASK, timeout_s=30)
        elapsed = (time.perf_counter() - t0) * 1000
        if not reply.get("ok") or reply.get("path") != "device":
            raise SystemExit(f"ask failed or left the fast path: {reply}")
        if i >= WARMUP:
            wall.append(elapsed)
            device.append(reply["ms"])
    return wall, device


def main():
    stack = Stack(with_tier=False)
    fw = tempfile.TemporaryDirectory(prefix="wisp-bench-fw-")
    try:
        # .mpy files, as `wisp image` puts them on a board: from sources, each ask would compile the
        # modules the agent loads per request again
        stage_firmware(Path(fw.name), simulator=True)
        stack.start_device("bench1", firmware_dir=fw.name)
        cli = cli_calls(stack)
        inproc, device = in_process_calls(stack)
    finally:
        stack.close()
        fw.cleanup()
    rows = [("`wisp ask` process, start to exit", cli),
            ("tools.ask.ask(): connect -> reply -> disconnect", inproc),
            ("device: ask -> reply (its `ms`)", device)]
    lines = ["## `wisp ask` wall time, fast path",
             "",
             f"{CALLS} calls each after {WARMUP} warm-up calls, one at a time: \"{FAST_ASK}\" to a simulated "
             "device (the firmware on the MicroPython unix port, from `.mpy` files as on a board) through real "
             "mosquitto on loopback. The "
             "process figure includes starting Python and importing paho; the in-process one is what the "
             f"CLI adds on top of the device. Machine: {platform.machine()}, Python "
             f"{platform.python_version()}; one run.",
             "",
             "| measured | p50 ms | p90 ms | p99 ms | mean ms |",
             "|---|---|---|---|---|"]
    for name, values in rows:
        lines.append(f"| {name} | {percentile(values, 50):.1f} | {percentile(values, 90):.1f} | "
                     f"{percentile(values, 99):.1f} | {statistics.mean(values):.1f} |")
    report = "\n".join(lines)
    print(report)
    write_section("cli_ask", report)


if __name__ == "__main__":
    main()
