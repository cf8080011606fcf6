"""End-to-end latency of one ask on loopback: wisp ask -> device -> bridge -> zero-delay fake tier
(two LLM rounds: the tool call, then the answer) -> GPIO -> reply. Prints and records p50/p90/p99."""
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import percentile, write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402

ASKS = 100
WARMUP = 5


def main():
    stack = Stack()
    try:
        stack.start_device("bench1")
        probe = stack.probe
        wall, device_ms = [], []
        for i in range(WARMUP + ASKS):
            ask_id = secrets.token_hex(4)
            t0 = time.perf_counter()
            probe.publish("wisp/bench1/ask", {"v": 1, "id": ask_id, "text": "turn on the porch light"})
            reply = probe.wait_for("wisp/bench1/reply", lambda r, a=ask_id: r.get("id") == a, timeout=30)
            elapsed = (time.perf_counter() - t0) * 1000
            if not reply["ok"]:
                raise SystemExit(f"ask failed: {reply}")
            if i >= WARMUP:
                wall.append(elapsed)
                device_ms.append(reply["ms"])
            probe.seen.clear()
    finally:
        stack.close()
    rows = [("client publish -> reply received", wall), ("device: ask received -> reply sent (its `ms`)", device_ms)]
    lines = [f"## One ask end to end (loopback, zero-delay fake tier)",
             "",
             f"{ASKS} asks of \"turn on the porch light\", one at a time, after {WARMUP} warm-up asks. "
             "Each ask is two LLM rounds (tool call, then the answer in words) through real mosquitto, "
             "the bridge process and the firmware on the MicroPython unix port. "
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
