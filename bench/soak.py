"""Soak: steady load for a long time (default 30 minutes) on the real stack. The device's heap
in use (after a collection, highest per window) and the bridge's RSS must stay flat. Samples go to
docs/soak.png (plot) and the figures to docs/benchmarks.md.   python bench/soak.py [--minutes 30] [--rate 5]"""
import argparse
import re
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import DOC, write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402

HEAP = 256 * 1024          # fixed, so free bytes read as heap in use
SAMPLE_S = 10
PLOT = DOC.parent / "soak.png"
LOAD = [("ask", {"text": "it is getting dark, light up the porch please"}, "reply"),
        ("ask", {"text": "turn off the porch light"}, "reply"),
        ("cmd", {"tool": "gpio_read", "args": {"pin": "door"}}, "cmd/res")]


def rss_kb(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def device_heap_used(stack, dev_id):
    stack.probe.publish(f"wisp/{dev_id}/cmd", {"v": 1, "id": "heap", "tool": "system_info", "args": {}})
    res = stack.probe.wait_for(f"wisp/{dev_id}/cmd/res", lambda r: isinstance(r, dict) and r.get("id") == "heap")
    return HEAP - int(re.search(r"heap (\d+) B free", res["result"]).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=5, help="load cycles per second (3 requests each)")
    args = parser.parse_args()
    s = Stack()
    samples, failures, done = [], 0, 0
    try:
        s.start_device("soak", heapsize=HEAP, extra={"llm_per_hour": 10**6, "llm_per_day": 10**7})
        t0 = time.monotonic()
        next_sample = t0
        heap_peak = 0
        while time.monotonic() - t0 < args.minutes * 60:
            cycle_start = time.monotonic()
            for suffix, body, answer in LOAD:
                req_id = secrets.token_hex(4)
                s.probe.publish(f"wisp/soak/{suffix}", dict(body, v=1, id=req_id))
                got = s.probe.wait_for(f"wisp/soak/{answer}", lambda r, i=req_id: isinstance(r, dict) and
                                       r.get("id") == i, timeout=30)
                done += 1
                failures += 0 if got.get("ok") else 1
            s.probe.seen.clear()
            heap_peak = max(heap_peak, device_heap_used(s, "soak"))
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - t0, heap_peak, rss_kb(s.bridge.pid)))
                print("t=%5.0f s  device heap in use %6.1f KB  bridge RSS %6.1f MB  requests %d  failed %d" % (
                    samples[-1][0], heap_peak / 1024, samples[-1][2] / 1024, done, failures), flush=True)
                heap_peak = 0
                next_sample += SAMPLE_S
            time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - cycle_start)))
    finally:
        s.close()
    plot(samples)
    first, last = samples[: max(1, len(samples) // 10)], samples[-max(1, len(samples) // 10):]

    def avg(rows, i):
        return sum(r[i] for r in rows) / len(rows)
    report = "\n".join([
        "## Soak",
        "",
        f"{args.minutes:g} minutes at {args.rate:g} cycles/s (an LLM ask, a fast-path ask and a direct command per "
        f"cycle) on the real stack; the device runs with -X heapsize={HEAP // 1024}K. Device heap in use after "
        "a garbage collection (highest per "
        f"{SAMPLE_S} s window), bridge RSS sampled at the same time. ![soak](soak.png)",
        "",
        "| measured | first tenth | last tenth | change |",
        "|---|---|---|---|",
        f"| device heap in use (KB) | {avg(first, 1) / 1024:.1f} | {avg(last, 1) / 1024:.1f} | "
        f"{(avg(last, 1) / avg(first, 1) - 1) * 100:+.1f} % |",
        f"| bridge RSS (MB) | {avg(first, 2) / 1024:.1f} | {avg(last, 2) / 1024:.1f} | "
        f"{(avg(last, 2) / avg(first, 2) - 1) * 100:+.1f} % |",
        f"| requests / failed | {done} | {failures} | |",
    ])
    print(report)
    write_section("soak", report)


def plot(samples):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [r[0] / 60 for r in samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(t, [r[1] / 1024 for r in samples])
    a.set_ylabel("device heap\nin use (KB)")
    a.set_ylim(bottom=0)
    b.plot(t, [r[2] / 1024 for r in samples], color="tab:orange")
    b.set_ylabel("bridge RSS (MB)")
    b.set_ylim(bottom=0)
    b.set_xlabel("minutes")
    fig.suptitle("wisp soak")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)


if __name__ == "__main__":
    main()
