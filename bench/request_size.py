"""What the bridge sends a tier for five typical asks on the default simulated device (four pins): bytes of
the first round's request, bytes of all rounds of the ask, the number of tools offered, and the bridge's
token estimate, as the fake tier received them through the real stack (mosquitto, bridge process,
firmware on the MicroPython unix port). Prints and records one run."""
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.fakes.openai_server import Reply  # noqa: E402

ASKS = [("could you switch the porch light on for the guests", [("gpio_write", {"pin": "porch_light", "value": 1})]),
        ("is the door open and is the heater running?", [("gpio_read", {"pin": "door"}),
                                                          ("gpio_read", {"pin": "heater"})]),
        ("remember that the guests leave on sunday", [("memory_set", {"key": "guests_leave", "value": "sunday"})]),
        ("what time is it on the device?", [("time_now", {})]),
        ("turn the fan on for ten minutes", [("gpio_pulse", {"pin": "fan", "ms": 600000})])]


def responder(request):
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    calls = dict(ASKS)[user]
    return Reply(text="Done.") if request["messages"][-1]["role"] == "tool" else Reply(calls=calls)


def wire_bytes(request):
    return len(json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode())


def main():
    stack = Stack(responder)
    rows = []
    try:
        stack.start_device("size1")
        for text, _calls in ASKS:
            before = len(stack.fake.requests)
            done = stack.wisp("ask", "size1", text, "--json")
            reply = json.loads(done.stdout)
            if not reply.get("ok"):
                raise SystemExit(f"ask failed: {reply}")
            rounds = stack.fake.requests[before:]
            rows.append((text, wire_bytes(rounds[0]), sum(map(wire_bytes, rounds)), len(rounds),
                         len(rounds[0].get("tools") or [])))
    finally:
        stack.close()
    lines = ["## Request size per ask (default device)",
             "",
             "What the fake tier received through the real stack for five typical asks on the default simulated "
             "device (four pins, no PWM, analog or I2C): compact JSON bytes of the first round's request and of all "
             f"rounds of the ask. Machine: {platform.machine()}; one run.",
             "",
             "| ask | first round, bytes | all rounds, bytes | rounds | tools offered |",
             "|---|---|---|---|---|"]
    lines += [f"| {t} | {first} | {total} | {n} | {tools} |" for t, first, total, n, tools in rows]
    report = "\n".join(lines)
    print(report)
    write_section("request_size", report)


if __name__ == "__main__":
    main()
