"""MQTT path overhead and throughput: virtual devices (one lightweight paho client speaking the protocol for many
device ids) -> mosquitto -> `python -m bridge` -> zero-delay fake tier (its own process).
Added latency = MQTT round trip (llm/req published -> done received) minus the same tier asked directly over
HTTP by the same machine; then open-loop rates to find what the bridge sustains on this machine."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt  # noqa: E402

from bench.report import percentile, write_section  # noqa: E402
from bench.tier_baseline import direct_latencies  # noqa: E402
from tests.bridge.harness import manifest  # noqa: E402
from tools.broker import start_mosquitto  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEVICES = 100
SEQUENTIAL = 300
RATES = (100, 250, 500)
RATE_SECONDS = 4
FAKE = ("import sys, time; sys.path.insert(0, %r)\nfrom tests.fakes.openai_server import FakeOpenAI, Reply\n"
        "f = FakeOpenAI(lambda r: Reply(calls=[('gpio_write', {'pin': 'porch_light', 'value': 1})]))\n"
        "print(f.start_in_thread(), flush=True)\ntime.sleep(3600)\n")


class Fleet:
    def __init__(self, broker):
        self.sent, self.done, self.lock = {}, {}, threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, client_id="bench-fleet")
        c.on_message = self._message
        # Nagle + delayed ACK would add ~40 ms to every QoS 1 round trip (docs: pitfalls)
        c.on_socket_open = lambda cl, ud, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.max_inflight_messages_set(1000)
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.subscribe("wisp/+/llm/res", 1)
        for i in range(DEVICES):
            c.publish(f"wisp/v{i}/manifest", json.dumps(manifest(f"v{i}")), qos=1, retain=True)
        self.c = c

    def _message(self, client, userdata, msg):
        m = json.loads(msg.payload)
        if m.get("done"):
            with self.lock:
                self.done.setdefault(m["id"], time.perf_counter())

    def send(self, n):
        req_id = f"q{n}"
        body = {"v": 1, "id": req_id, "round": 0, "msgs": [{"r": "user", "t": "porch on"}],
                "class": "interactive", "budget_ms": 5000, "hash": "5d41402a"}
        self.sent[req_id] = time.perf_counter()
        self.c.publish(f"wisp/v{n % DEVICES}/llm/req", json.dumps(body), qos=1)
        return req_id

    def wait(self, req_id, timeout=10):
        deadline = time.monotonic() + timeout
        while req_id not in self.done and time.monotonic() < deadline:
            time.sleep(0.0002)
        return (self.done[req_id] - self.sent[req_id]) * 1000 if req_id in self.done else None


def main():
    tmp = Path(tempfile.mkdtemp(prefix="wisp-bench-"))
    broker = start_mosquitto(tmp / "mosq")
    fake = subprocess.Popen([sys.executable, "-c", FAKE % str(REPO)], stdout=subprocess.PIPE, text=True)
    url = fake.stdout.readline().strip()
    (tmp / "wisp.toml").write_text("")
    env = {**os.environ, "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_LOCAL_URL": url,
           "WISP_CONFIG": str(tmp / "wisp.toml"), "PYTHONPATH": str(REPO)}
    env.pop("WISP_API_TOKEN", None)
    log = open(tmp / "bridge.log", "wb")
    bridge = subprocess.Popen([sys.executable, "-m", "bridge", "--log-level", "WARNING"], cwd=tmp, env=env,
                              stdout=log, stderr=log)
    try:
        time.sleep(1.5)
        fleet = Fleet(broker)
        time.sleep(0.5)
        base = asyncio.run(direct_latencies(url, SEQUENTIAL))
        n = 0
        for _ in range(30):  # warm-up
            fleet.wait(fleet.send(n))
            n += 1
        seq = []
        for _ in range(SEQUENTIAL):
            seq.append(fleet.wait(fleet.send(n)))
            n += 1
        seq = [x for x in seq if x is not None]
        rate_rows = []
        for rate in RATES:
            ids, t0 = [], time.perf_counter()
            for k in range(rate * RATE_SECONDS):
                delay = t0 + k / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                ids.append(fleet.send(n))
                n += 1
            lat = [fleet.wait(i, timeout=15) for i in ids]
            ok = [x for x in lat if x is not None]
            span = max(fleet.done[i] for i in ids if i in fleet.done) - t0
            rate_rows.append(f"| {rate} | {len(ok) / span:.0f} | {percentile(ok, 50):.1f} | {percentile(ok, 99):.1f} "
                             f"| {len(lat) - len(ok)} |")
    finally:
        bridge.terminate()
        bridge.wait(10)
        fake.kill()
        broker.stop()
    b50, b99, m50, m99 = percentile(base, 50), percentile(base, 99), percentile(seq, 50), percentile(seq, 99)
    lines = ["## Bridge MQTT path: added latency and throughput",
             "", f"One paho client speaking the protocol for {DEVICES} virtual devices -> mosquitto -> "
             "`python -m bridge` -> zero-delay fake tier in its own process (one tool call streamed), all on "
             f"this {os.cpu_count()}-core machine. Sequential: {SEQUENTIAL} requests one at a time.",
             "", "| path | p50 ms | p99 ms |", "|---|---|---|",
             f"| tier asked directly over HTTP (baseline) | {b50:.2f} | {b99:.2f} |",
             f"| device -> broker -> bridge -> tier -> done | {m50:.2f} | {m99:.2f} |",
             f"| **added by MQTT + bridge** | **{m50 - b50:.2f}** | **{m99 - b99:.2f}** |",
             "", f"Open loop, {RATE_SECONDS} s per rate (latency = llm/req published -> done received):",
             "", "| offered req/s | achieved req/s | p50 ms | p99 ms | unanswered |", "|---|---|---|---|---|",
             *rate_rows]
    text = "\n".join(lines)
    print(text)
    write_section("bridge-mqtt", text)


if __name__ == "__main__":
    main()
