"""`/v1` under concurrent streamed requests to one tier at its default max_concurrency (32): requests/s,
latency and errors at concurrency 1/8/32/64. Beyond the tier's limit requests queue (FIFO, bounded by their
deadline) rather than fail. The fake provider runs in its own process, 50 ms to first token, ~1,000 tokens/s;
the bridge is `python -m bridge`. Prints and records one run."""
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bridge_vs_litellm import TOKEN, run_load, start_v1_bridge  # noqa: E402
from bench.report import percentile, write_section  # noqa: E402
from tools.broker import start_mosquitto  # noqa: E402

LEVELS = (1, 8, 32, 64)
REQUESTS = 200  # per level, after a warm-up of 20
FAKE = ("import sys, time; sys.path.insert(0, %r)\nfrom tests.fakes.openai_server import FakeOpenAI, Reply\n"
        "f = FakeOpenAI(lambda r: Reply(text='The porch light is on now.', ttft_ms=50, chunk_delay_ms=1))\n"
        "print(f.start_in_thread(), flush=True)\ntime.sleep(3600)\n")


def main():
    tmp = Path(tempfile.mkdtemp(prefix="wisp-bench-v1-"))
    broker = start_mosquitto(tmp / "mosq")
    procs = []
    results = {}
    try:
        fake = subprocess.Popen([sys.executable, "-c", FAKE % str(REPO)], stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        url = fake.stdout.readline().strip()
        bridge_url = start_v1_bridge(tmp, broker, url, procs)  # the tier at its default max_concurrency
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for c in LEVELS:
            asyncio.run(run_load(bridge_url, "interactive", headers, True, 20, c))
            results[c] = asyncio.run(run_load(bridge_url, "interactive", headers, True, REQUESTS, c))
            lat, rps, failed = results[c]
            print(f"c={c}: {rps:.0f} req/s, p50 {percentile(lat, 50):.1f} ms, failed {len(failed)}", flush=True)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(15)
        broker.stop()
    lines = ["## `/v1` concurrency, one tier at its default limit",
             "",
             f"Streamed chat completions through `python -m bridge` to one fake tier (own process, 50 ms to first "
             f"token, ~1,000 tokens/s) left at its default max_concurrency of 32; {REQUESTS} requests per level "
             "after 20 warm-up requests. Above 32 in flight, requests wait for the tier in FIFO order. "
             f"{os.cpu_count()}-core machine; one run.",
             "",
             "| concurrency | requests/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|"]
    for c, (lat, rps, failed) in results.items():
        lines.append(f"| {c} | {rps:.0f} | {percentile(lat, 50):.1f} | {percentile(lat, 99):.1f} | {len(failed)} |")
    errors = sum(len(f) for _, _, f in results.values())
    lines += ["", f"Goal: 0 errors at concurrency 64: {len(results[64][2])} errors, "
              f"{'met' if not results[64][2] else 'NOT met'} ({errors} errors over all levels)."]
    report = "\n".join(lines)
    print(report)
    write_section("v1_concurrency", report)


if __name__ == "__main__":
    main()
