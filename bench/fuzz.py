"""Fuzzing at full strength: 10,000 hostile payloads per topic the device reads and per topic
the bridge reads, then both must still answer. Prints and records the counts (make test runs
the same code with a shortened count)."""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.fuzz.test_fuzz_bridge import fuzz_bridge  # noqa: E402
from tests.fuzz.test_fuzz_device import TOPICS, device_still_answers, fuzz_device  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-topic", type=int, default=10000)
    args = parser.parse_args()
    s = Stack()
    try:
        # fuzz asks reach the LLM too
        proc = s.start_device("fuzz", extra={"llm_per_hour": 10**6, "llm_per_day": 10**7})
        t0 = time.monotonic()
        device_sent = fuzz_device(s, "fuzz", args.per_topic, seed=int(time.time()))
        reply, res = device_still_answers(s, "fuzz", timeout=300)
        device_s = time.monotonic() - t0
        device_ok = proc.poll() is None and reply["ok"] and res["ok"] and "Traceback" not in s.console("fuzz")
        t0 = time.monotonic()
        bridge_sent = fuzz_bridge(s, args.per_topic, seed=int(time.time()))
        for attempt in range(60):  # "bridge busy" is a correct answer while the flood drains: ask again
            s.probe.publish("wisp/fuzz/ask", {"v": 1, "id": f"llm-after-{attempt}",
                                              "text": "it is getting dark, light up the porch"})
            llm = s.probe.wait_for("wisp/fuzz/reply", lambda r, a=attempt: isinstance(r, dict)
                                   and r.get("id") == f"llm-after-{a}", timeout=120)
            if "busy" not in llm["text"]:
                break
            time.sleep(1)
        bridge_s = time.monotonic() - t0
        bridge_ok = s.bridge.poll() is None and llm["ok"] and "Traceback" not in s.bridge_log()
        if not bridge_ok:
            print("bridge check failed: alive=%s reply=%s traceback=%s" % (
                s.bridge.poll() is None, llm, "Traceback" in s.bridge_log()))
    finally:
        s.close()
    report = "\n".join([
        "## Fuzzing",
        "",
        "Generated payloads (random bytes, truncated and deeply nested JSON, oversized strings, wrong "
        "types, odd unicode, near-valid messages with one field wrong) published through real mosquitto "
        "to a running device (firmware on the unix port) and to the bridge process; afterwards each must "
        "still answer a real request. One run.",
        "",
        "| target | topics | payloads | crashes | still answering | time |",
        "|---|---|---|---|---|---|",
        f"| device | {', '.join(TOPICS)}, homeassistant/status | {device_sent} | {0 if device_ok else 'SEE LOG'} "
        f"| {'yes' if device_ok else 'NO'} | {device_s:.0f} s |",
        f"| bridge | llm/req (2 devices), manifest | {bridge_sent} | {0 if bridge_ok else 'SEE LOG'} "
        f"| {'yes' if bridge_ok else 'NO'} | {bridge_s:.0f} s |",
    ])
    print(report)
    write_section("fuzz", report)
    return 0 if device_ok and bridge_ok else 1


if __name__ == "__main__":
    sys.exit(main())
