"""What the bridge sends a tier for five typical asks on the default simulated device (four pins): bytes of the
first round's request, bytes and prompt tokens of all rounds of the ask, rounds and tools offered, before
(an earlier commit, bench/before.py) and now, through the real stack (mosquitto, bridge process, firmware on
the MicroPython unix port) against the fake tier. The fake plays a model that follows the system prompt: words
next to its action calls, none next to reads. Prompt tokens are counted with the fakes' tokenizer stand-in
(tests/fakes/openai_server.py count_tokens) over what the tier received, so before and now count alike.
Prints and records one run."""
import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.before import BASELINE, measure_at, use_tree  # noqa: E402

ASKS = [("could you switch the porch light on for the guests", [("gpio_write", {"pin": "porch_light", "value": 1})]),
        ("tell me if the door is open and the heater is running", [("gpio_read", {"pin": "door"}),
                                                                   ("gpio_read", {"pin": "heater"})]),
        ("remember that the guests leave on sunday", [("memory_set", {"key": "guests_leave", "value": "sunday"})]),
        ("what time is it on the device?", [("time_now", {})]),
        ("turn the fan on for ten seconds", [("gpio_pulse", {"pin": "fan", "ms": 10000})])]
READS = ("gpio_read", "time_now")
FIRST_ROUND_GOAL = 3000  # bytes, the default device's first round
TOKENS_GOAL = 3.0  # times fewer prompt tokens per action ask, all rounds


def responder(request):
    from tests.fakes.openai_server import Reply
    user = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]  # earlier asks are history
    calls = dict(ASKS)[user]
    if request["messages"][-1]["role"] == "tool":
        return Reply(text="The door is closed and the heater is off." if calls[0][0] in READS else "Done.")
    words = "" if calls[0][0] in READS else "Done: " + ", ".join(f"{n}({a})" for n, a in calls)
    return Reply(text=words, calls=calls)


def measure():
    """Every request the tier received, per ask: {ask: [request, ...]}."""
    use_tree()
    from tests.e2e.stack import Stack
    stack = Stack(responder)
    out = {}
    try:
        # the bench's own rate caps are high: five asks with up to two rounds each
        stack.start_device("size1")
        for text, _calls in ASKS:
            before = len(stack.fake.requests)
            reply = json.loads(stack.wisp("ask", "size1", text, "--json").stdout)
            if not reply.get("ok"):
                raise SystemExit(f"ask failed: {reply}")
            out[text] = stack.fake.requests[before:]
    finally:
        stack.close()
    return out


def wire_bytes(request):
    return len(json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode())


def rows(requests_by_ask):
    from tests.fakes.openai_server import count_tokens
    return {text: {"first": wire_bytes(reqs[0]), "total": sum(map(wire_bytes, reqs)), "rounds": len(reqs),
                   "tools": len(reqs[0].get("tools") or []),
                   "tokens": sum(count_tokens([r["messages"], r.get("tools") or []]) for r in reqs)}
            for text, reqs in requests_by_ask.items()}


def main():
    if "--measure" in sys.argv:
        print(json.dumps(measure()))
        return
    before = rows(measure_at(BASELINE, HERE / "request_size.py"))
    now = rows(measure())
    lines = ["## Request size per ask (default device)",
             "",
             "What the fake tier received through the real stack for five typical asks on the default simulated "
             "device (four pins, no PWM, analog or I2C), before (commit "
             f"{BASELINE}, measured in the same run) and now: compact JSON bytes of the first round's request, "
             "prompt tokens of all rounds of the ask (the fakes' tokenizer stand-in, tools included), rounds and "
             "tools offered. The fake model writes its reply next to action calls and nothing next to reads, as "
             "the system prompt asks. The asks run in this order on one device, so each later one carries the "
             "device's remembered turns (up to two: what was asked, the calls that ran with their results, the "
             f"answer). Machine: {platform.machine()}; one run.",
             "",
             "| ask | first round bytes, before -> now | prompt tokens all rounds, before -> now | "
             "rounds | tools offered |",
             "|---|---|---|---|---|"]
    for text, n in now.items():
        b = before[text]
        lines.append(f"| {text} | {b['first']} -> {n['first']} | {b['tokens']} -> {n['tokens']} "
                     f"({b['tokens'] / n['tokens']:.1f}x fewer) | {b['rounds']} -> {n['rounds']} | "
                     f"{b['tools']} -> {n['tools']} |")
    porch = now[ASKS[0][0]]["first"]
    actions = [t for t, calls in ASKS if calls[0][0] not in READS]
    ratio = sum(before[t]["tokens"] for t in actions) / sum(now[t]["tokens"] for t in actions)
    lines += ["",
              f"Goal: the default device's first round <= {FIRST_ROUND_GOAL} bytes: {porch} bytes, "
              f"{'met' if porch <= FIRST_ROUND_GOAL else 'NOT met'}. Goal: prompt tokens per action ask (all "
              f"rounds) down >= {TOKENS_GOAL:.0f}x: {ratio:.1f}x over the {len(actions)} action asks, "
              f"{'met' if ratio >= TOKENS_GOAL else 'NOT met'}."]
    report = "\n".join(lines)
    print(report)
    from bench.report import write_section
    write_section("request_size", report)


if __name__ == "__main__":
    main()
