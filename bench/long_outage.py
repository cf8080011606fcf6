"""A network outage of minutes on the device side (too slow for `make test`): the cable is
pulled for --minutes, a schedule keeps switching a pin offline meanwhile, then the cable is
put back. Records how long the device took to come back (its backoff is capped at
RECONNECT_CAP_MS) and that every ask afterwards gets exactly one reply."""
import argparse
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.faults.netcut import NetCut  # noqa: E402


def cmd(s, dev, tool, args):
    req = secrets.token_hex(4)
    s.probe.publish(f"wisp/{dev}/cmd", {"v": 1, "id": req, "tool": tool, "args": args})
    return s.probe.wait_for(f"wisp/{dev}/cmd/res", lambda r: isinstance(r, dict) and r.get("id") == req)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3)
    args = parser.parse_args()
    s = Stack()
    cable = NetCut(s.broker.host, s.broker.port)
    try:
        s.start_device("out1", extra={"broker": {"host": cable.host, "port": cable.port}})
        cmd(s, "out1", "routine_define", {"name": "flip", "steps": [{"tool": "gpio_toggle", "args": {"pin": "fan"}}]})
        cmd(s, "out1", "schedule_add", {"spec": "every 20s", "routine": "flip", "name": "flipper"})
        cable.cut()
        time.sleep(args.minutes * 60)
        restored = time.monotonic()
        cable.restore()
        s.probe.wait_for("wisp/out1/status", lambda st: isinstance(st, dict) and st.get("state") == "online",
                         timeout=120)
        back_s = time.monotonic() - restored
        flips = s.console("out1").count("routine flip (schedule): ok")
        replies, asks = 0, 20
        for i in range(asks):
            s.probe.publish("wisp/out1/ask", {"v": 1, "id": f"after{i}", "text": "is the fan on?"})
        for t, p in s.probe.drain(5):
            if t == "wisp/out1/reply" and isinstance(p, dict) and str(p.get("id", "")).startswith("after"):
                replies += 1
    finally:
        cable.close()
        s.close()
    report = "\n".join([
        "## Long network outage on the device side",
        "",
        f"The device's connection to the broker cut for {args.minutes:g} minutes (a TCP proxy refusing and "
        "dropping everything), a schedule flipping a pin every 20 s meanwhile, then restored. One run.",
        "",
        "| measured | value |",
        "|---|---|",
        f"| back online after the network returned | {back_s:.1f} s (backoff cap 30 s) |",
        f"| scheduled routine runs on the device (outage included) | {flips} |",
        f"| asks after the outage / replies | {asks} / {replies} |",
    ])
    print(report)
    write_section("long_outage", report)
    return 0 if replies == asks else 1


if __name__ == "__main__":
    sys.exit(main())
