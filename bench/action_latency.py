"""Ask -> first action and ask -> reply of an action ask on the default simulated device, through the real stack
(mosquitto, bridge process, firmware on the MicroPython unix port), against two simulated tiers:
- premium: 100 ms to first token, 1,000 tokens/s;
- local CPU: time to first token grows with the prompt (100 ms + prompt tokens at 400 tokens/s of prompt
  reading, tokens ~ request bytes / 4), then 25 tokens/s.
Before (an earlier commit, bench/before.py) and now, measured in the same run. The first action is the
device's retained state message of the switched pin; the reply is its reply message. Prints and records one run.
"""
import json
import platform
import secrets
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.before import BASELINE, measure_at, use_tree  # noqa: E402

ASKS = {"premium": 30, "local CPU": 6}
WARMUP = 2
ON, OFF = "it is getting dark, light up the porch please", "the guests have left, put out the porch lamp please"
GOAL = 1.3  # ask -> reply p50 at most this multiple of ask -> first action p50, premium tier


def tier_timing(name, request):
    if name == "premium":
        return 100.0, 1.0
    prompt_tokens = len(json.dumps(request, separators=(",", ":"))) / 4
    return 100.0 + prompt_tokens / 400 * 1000, 40.0


def responder_for(tier):
    from tests.fakes.openai_server import Reply

    def respond(request):
        ttft, per_chunk = tier_timing(tier["name"], request)
        user = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
        value = 1 if user == ON else 0
        if request["messages"][-1]["role"] == "tool":
            reply = Reply(text=f"The porch light is {'on' if value else 'off'}.")
        else:
            reply = Reply(text=f"Porch light {'on' if value else 'off'}.",
                          calls=[("gpio_write", {"pin": "porch_light", "value": value})])
        reply.ttft_ms, reply.chunk_delay_ms = ttft, per_chunk
        return reply
    return respond


def measure():
    use_tree()
    from tests.e2e.stack import Stack
    tier = {"name": "premium"}
    stack = Stack(responder_for(tier))
    out = {}
    try:
        stack.start_device("lat1", extra={"llm_per_hour": 100000, "llm_per_day": 100000})
        arrivals = []  # (time, topic, payload) of every message, stamped as it arrives
        lock = threading.Lock()

        def on_message(_c, _u, m):
            with lock:
                arrivals.append((time.perf_counter(), m.topic, m.payload))
        stack.probe.client.on_message = on_message
        for name, n in ASKS.items():
            tier["name"] = name
            action, reply = [], []
            for i in range(WARMUP + n):
                text = ON if i % 2 == 0 else OFF
                ask_id = secrets.token_hex(4)
                with lock:
                    arrivals.clear()
                t0 = time.perf_counter()
                stack.probe.publish("wisp/lat1/ask", {"v": 1, "id": ask_id, "text": text})
                done = None
                deadline = t0 + 90
                while done is None and time.perf_counter() < deadline:
                    with lock:
                        done = next((a for a in arrivals if a[1] == "wisp/lat1/reply"
                                     and json.loads(a[2]).get("id") == ask_id), None)
                    time.sleep(0.002)
                if done is None or not json.loads(done[2]).get("ok") or json.loads(done[2]).get("path") != "llm":
                    raise SystemExit(f"ask failed: {done and done[2]}")
                with lock:
                    acted = next(a for a in arrivals if a[1] == "wisp/lat1/state/porch_light")
                if i >= WARMUP:
                    action.append((acted[0] - t0) * 1000)
                    reply.append((done[0] - t0) * 1000)
            out[name] = {"action": action, "reply": reply}
    finally:
        stack.close()
    return out


def main():
    if "--measure" in sys.argv:
        print(json.dumps(measure()))
        return
    from bench.report import percentile, write_section
    before = measure_at(BASELINE, HERE / "action_latency.py")
    now = measure()
    lines = ["## Action ask: first action and reply",
             "",
             f"\"{ON}\" / \"{OFF}\" (alternating, so the pin changes each time) on the default simulated device, "
             "through mosquitto, the bridge process and the firmware on the MicroPython unix port. Simulated "
             "tiers: premium (100 ms to first token, 1,000 tokens/s); local CPU (100 ms + prompt tokens at 400 "
             "tokens/s to first token, tokens ~ request bytes / 4, then 25 tokens/s). First action: the "
             "device's state message of the pin; reply: its reply message. Before: commit "
             f"{BASELINE}, same run; asks per tier: {', '.join(f'{k} {v}' for k, v in ASKS.items())} after "
             f"{WARMUP} warm-up asks. Machine: {platform.machine()}; one run.",
             "",
             "| tier | version | ask -> first action p50 / p90 ms | ask -> reply p50 / p90 ms | reply / action p50 |",
             "|---|---|---|---|---|"]
    for name in ASKS:
        for label, figures in (("before", before), ("now", now)):
            a, r = figures[name]["action"], figures[name]["reply"]
            lines.append(f"| {name} | {label} | {percentile(a, 50):.0f} / {percentile(a, 90):.0f} | "
                         f"{percentile(r, 50):.0f} / {percentile(r, 90):.0f} | "
                         f"{percentile(r, 50) / percentile(a, 50):.2f}x |")
    ratio = percentile(now["premium"]["reply"], 50) / percentile(now["premium"]["action"], 50)
    lines += ["", f"Goal: on the premium tier, ask -> reply p50 <= {GOAL}x ask -> first action p50: {ratio:.2f}x, "
              f"{'met' if ratio <= GOAL else 'NOT met'}."]
    report = "\n".join(lines)
    print(report)
    write_section("action_latency", report)


if __name__ == "__main__":
    main()
