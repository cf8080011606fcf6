"""End-to-end latency of one ask on loopback, both paths: the LLM path (device -> bridge ->
zero-delay fake tier, two rounds: the tool call, then the answer -> GPIO -> reply) and the
on-device fast path ("turn on the porch light": no network beyond the ask and its reply).
Prints and records p50/p90/p99."""
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import percentile, write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tools.image import stage_firmware  # noqa: E402

ASKS = 100
WARMUP = 5
LLM_ASK = "it is getting dark, light up the porch please"   # the fast path does not take this
FAST_ASK = "turn on the porch light"


def measure(probe, text, path):
    """Client publish -> reply received (ms), and the device's own `ms`, for ASKS asks."""
    wall, device_ms = [], []
    for i in range(WARMUP + ASKS):
        ask_id = secrets.token_hex(4)
        t0 = time.perf_counter()
        probe.publish("wisp/bench1/ask", {"v": 1, "id": ask_id, "text": text})
        reply = probe.wait_for("wisp/bench1/reply", lambda r, a=ask_id: r.get("id") == a, timeout=30)
        elapsed = (time.perf_counter() - t0) * 1000
        if not reply["ok"] or reply["path"] != path:
            raise SystemExit(f"ask failed or took the wrong path: {reply}")
        if i >= WARMUP:
            wall.append(elapsed)
            device_ms.append(reply["ms"])
        probe.seen.clear()
    return wall, device_ms


def main():
    stack = Stack()
    fw = tempfile.TemporaryDirectory(prefix="wisp-bench-fw-")
    try:
        # .mpy files, as `wisp image` puts them on a board: from sources, each ask would compile the
        # modules the agent loads per request (answer, conversation, fastpath) again
        stage_firmware(Path(fw.name), simulator=True)
        stack.start_device("bench1", firmware_dir=fw.name, extra={"llm_per_hour": 100000, "llm_per_day": 100000})
        llm_wall, llm_device = measure(stack.probe, LLM_ASK, "llm")
        fast_wall, fast_device = measure(stack.probe, FAST_ASK, "device")
    finally:
        stack.close()
        fw.cleanup()
    rows = [("LLM path: client publish -> reply received", llm_wall),
            ("LLM path: device ask -> reply (its `ms`)", llm_device),
            ("fast path: client publish -> reply received", fast_wall),
            ("fast path: device ask -> reply (its `ms`)", fast_device)]
    lines = ["## One ask end to end (loopback, zero-delay fake tier)",
             "",
             f"{ASKS} asks per path, one at a time, after {WARMUP} warm-up asks, through real mosquitto, "
             "the bridge process and the firmware on the MicroPython unix port, from `.mpy` files as on a board. "
             "LLM path: "
             f"\"{LLM_ASK}\", two LLM rounds (tool call, then the answer in words). Fast path: "
             f"\"{FAST_ASK}\", answered on the device. The device's `ms` is whole milliseconds. "
             f"Machine: {platform.machine()}, Python {platform.python_version()}; one run.",
             "",
             "| measured | p50 ms | p90 ms | p99 ms | mean ms |",
             "|---|---|---|---|---|"]
    for name, values in rows:
        lines.append(f"| {name} | {percentile(values, 50):.1f} | {percentile(values, 90):.1f} | "
                     f"{percentile(values, 99):.1f} | {statistics.mean(values):.1f} |")
    report = "\n".join(lines)
    print(report)
    write_section("ask_latency", report)


if __name__ == "__main__":
    main()
