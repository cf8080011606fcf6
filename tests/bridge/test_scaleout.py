"""Two bridge processes share $share/wisp/wisp/+/llm/req on one mosquitto; one is SIGKILLed mid-stream.
A paho "device" re-sends unanswered requests with the same id and, like the firmware, ignores answers for
ids it is done with and seqs it already processed: every request must end with exactly one done processed."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.bridge.harness import manifest
from tests.fakes.openai_server import FakeOpenAI, Reply
from tools.broker import start_mosquitto

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 24
RESEND_S = 1.0  # the device's timeout before it re-sends an unanswered request
TOTAL_S = 20.0


class Device:
    def __init__(self, broker, device_id="scale1"):
        self.id = device_id
        self.lock = threading.Lock()
        self.seqs: dict[str, set] = {}  # processed seqs per request id
        self.done: dict[str, int] = {}  # done messages processed per id (the rule makes this 0 or 1)
        self.ignored = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, client_id=f"dev-{device_id}")
        c.on_message = self._message
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.subscribe(f"wisp/{device_id}/llm/res", 1)
        self.client = c

    def _message(self, client, userdata, msg):
        m = json.loads(msg.payload)
        with self.lock:
            if m["id"] in self.done or m["seq"] in self.seqs.setdefault(m["id"], set()):
                self.ignored += 1  # stale id or duplicate seq: dropped, as the firmware does
                return
            self.seqs[m["id"]].add(m["seq"])
            if m.get("done"):
                assert "err" not in m, m
                self.done[m["id"]] = self.done.get(m["id"], 0) + 1

    def send(self, req_id):
        req = {"v": 1, "id": req_id, "round": 0, "msgs": [{"r": "user", "t": "porch on"}],
               "class": "interactive", "budget_ms": 10000, "hash": "5d41402a"}
        self.client.publish(f"wisp/{self.id}/llm/req", json.dumps(req), qos=1)


def start_bridge(tmp: Path, name: str, broker, tier_url: str):
    d = tmp / name
    d.mkdir()
    (d / "wisp.toml").write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_SHARED": "1", "WISP_LOCAL_URL": tier_url,
           "WISP_CONFIG": str(d / "wisp.toml")}
    log = open(d / "bridge.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=d, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while "bridge ready" not in (d / "bridge.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (d / "bridge.log").read_text()
        time.sleep(0.05)
    return proc, d / "bridge.log"


def test_two_bridges_one_killed_mid_stream_every_request_answered_once(tmp_path):
    broker = start_mosquitto(tmp_path / "mosq")
    # each answer streams for ~0.5 s: a kill 0.25 s after the burst lands mid-stream on the victim's share
    fake = FakeOpenAI(lambda req: Reply(text="The porch light is on.",
                                        calls=[("gpio_write", {"pin": "porch_light", "value": 1})],
                                        chunk_delay_ms=25, arg_piece_len=3))
    fake.start_in_thread()
    procs, device = [], None
    try:
        procs = [start_bridge(tmp_path, n, broker, fake.base_url) for n in ("a", "b")]
        device = Device(broker)
        device.client.publish(f"wisp/{device.id}/manifest", json.dumps(manifest(device.id)), qos=1, retain=True)
        time.sleep(0.3)  # retained manifest reaches both bridges
        ids = [f"r{i}" for i in range(REQUESTS)]
        sent_at = {}
        for req_id in ids:
            device.send(req_id)
            sent_at[req_id] = time.monotonic()
        time.sleep(0.25)
        victim, victim_log = procs[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        resent = 0
        deadline = time.monotonic() + TOTAL_S
        while time.monotonic() < deadline:
            with device.lock:
                missing = [i for i in ids if i not in device.done]
            if not missing:
                break
            for req_id in missing:
                if time.monotonic() - sent_at[req_id] > RESEND_S:
                    device.send(req_id)
                    sent_at[req_id] = time.monotonic()
                    resent += 1
            time.sleep(0.05)
        time.sleep(0.3)  # late duplicates, if any, would arrive now
        with device.lock:
            assert device.done == {i: 1 for i in ids}, (device.done, procs[1][1].read_text()[-2000:])
        assert resent >= 1, "the kill landed on no request in flight; the test proved nothing"
        survivor_log = procs[1][1].read_text()
        assert "Traceback" not in survivor_log
        assert len(fake.requests) <= REQUESTS + resent  # no duplicate started a second stream
    finally:
        if device:
            device.client.disconnect()
            device.client.loop_stop()
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        fake.stop()
        broker.stop()
