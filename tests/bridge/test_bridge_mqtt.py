"""The bridge end to end over a real mosquitto: a paho client plays the device, FakeOpenAI plays the tier.

Only the paid inference API is a stand-in (speaking its real SSE wire format); broker, MQTT and HTTP are real.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from bridge.config import load_config
from bridge.rounds.toolset import openai_tools
from tests.bridge.harness import BridgeThread
from tests.fakes.openai_server import FakeOpenAI, Reply
from tools.broker import start_mosquitto

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 5.0

TOOLS = [{"name": "gpio_write", "desc": "Set a named output pin",
          "params": {"type": "object",
                     "properties": {"pin": {"type": "string", "enum": ["porch_light"]},
                                    "value": {"type": "integer", "enum": [0, 1]}},
                     "required": ["pin", "value"]}}]


def manifest(device_id):
    return {"v": 1, "id": device_id, "fw": "0.1.0", "hash": "5d41402a", "tools": TOOLS,
            "pins": {"porch_light": {"mode": "out"}, "door": {"mode": "in"}}, "limits": {"rounds": 4, "calls": 4}}


def llm_req(req_id, msgs=None, **extra):
    return {"v": 1, "id": req_id, "round": 0, "msgs": msgs or [{"r": "user", "t": "turn on the porch light"}],
            "class": "interactive", "budget_ms": 5000, "hash": "5d41402a", **extra}


def wait_until(predicate, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


class Device:
    """A paho client standing in for a wisp device: publishes manifest and llm/req, records llm/res."""

    def __init__(self, broker, device_id):
        self.id = device_id
        self.inbox = queue.Queue()
        self.skipped = []  # messages answers() passed over: other requests' answers, kept for drain()
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                        client_id=f"test-{device_id}-{uuid.uuid4().hex[:6]}")
        c.on_message = lambda c_, u, m: self.inbox.put((time.monotonic(), json.loads(m.payload)))
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.subscribe(f"wisp/{device_id}/llm/res", 1)
        assert subscribed.wait(WAIT_S)
        self.client = c

    def publish(self, subtopic, payload, retain=False):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        self.client.publish(f"wisp/{self.id}/{subtopic}", payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def publish_manifest(self):
        self.publish("manifest", manifest(self.id), retain=True)

    def answers(self, req_id, timeout_s=WAIT_S):
        """(arrival time, message) for req_id, up to and including its done message."""
        out, deadline = [], time.monotonic() + timeout_s
        while True:
            try:
                t, msg = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no done for {req_id} within {timeout_s} s; got {out}") from None
            if msg.get("id") != req_id:
                self.skipped.append(msg)
                continue
            out.append((t, msg))
            if msg.get("done"):
                return out

    def drain(self, quiet_s=0.3):
        """Everything skipped so far plus what arrives until nothing has for quiet_s seconds."""
        out, self.skipped = self.skipped, []
        while True:
            try:
                out.append(self.inbox.get(timeout=quiet_s)[1])
            except queue.Empty:
                return out

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def fake():
    f = FakeOpenAI()
    f.start_in_thread()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def bridge(broker, fake, tmp_path_factory):
    empty = tmp_path_factory.mktemp("cfg") / "wisp.toml"
    empty.write_text("")  # an explicit empty file, so a developer's ./wisp.toml cannot leak in
    config = load_config(str(empty), env={"WISP_BROKER": f"{broker.host}:{broker.port}",
                                          "WISP_LOCAL_URL": fake.base_url})
    b = BridgeThread(config).start()
    yield b.bridge
    b.stop()


@pytest.fixture
def device(broker, bridge, request):
    d = Device(broker, request.node.name.split("[")[0].replace("test_", "d-")[:32].lower())
    d.publish_manifest()
    assert wait_until(lambda: bridge.manifests.get(d.id) is not None)
    yield d
    d.close()


def requests_for(fake, device_id):
    return [r for r in fake.requests if device_id in r["messages"][0]["content"]]


def test_tool_calls_stream_before_done(fake, device):
    fake.responder = lambda req: Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1}),
                                              ("gpio_write", {"pin": "porch_light", "value": 0})],
                                       chunk_delay_ms=25)
    device.publish("llm/req", llm_req("s1"))
    got = device.answers("s1")
    msgs = [m for _, m in got]
    assert [m["seq"] for m in msgs] == [0, 1, 2]
    assert [m["done"] for m in msgs] == [False, False, True]
    assert [c["args"] for m in msgs[:2] for c in m["calls"]] == [{"pin": "porch_light", "value": 1},
                                                                   {"pin": "porch_light", "value": 0}]
    assert all(m["calls"][0]["tool"] == "gpio_write" and m["calls"][0]["cid"] for m in msgs[:2])
    assert msgs[0]["calls"][0]["cid"] != msgs[1]["calls"][0]["cid"]
    # the device could act on the first call while the tier was still streaming the second
    assert got[0][0] < fake.ended_streams()[-1]
    done = msgs[-1]
    assert done["tier"] == "local" and "err" not in done
    assert isinstance(done["usage"]["in"], int) and isinstance(done["usage"]["out"], int)
    assert device.drain() == []  # exactly one done, nothing after it

    (sent,) = requests_for(fake, device.id)
    assert sent["stream"] is True and sent["model"] == "local"
    assert sent["tools"] == openai_tools(manifest(device.id)["tools"])
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][1:] == [{"role": "user", "content": "turn on the porch light"}]


def test_second_round_carries_tool_results(fake, device):
    fake.responder = lambda req: Reply(text="The porch light is on.")
    msgs = [{"r": "user", "t": "turn on the porch light"},
            {"r": "asst", "t": "", "calls": [{"cid": "call_1", "tool": "gpio_write",
                                              "args": {"pin": "porch_light", "value": 1}}]},
            {"r": "tool", "cid": "call_1", "t": "ok: porch_light=1"}]
    device.publish("llm/req", llm_req("r1", msgs, round=1))
    ((_, done),) = device.answers("r1")
    assert done["round"] == 1 and done["seq"] == 0 and done["text"] == "The porch light is on."
    (sent,) = requests_for(fake, device.id)
    assert sent["messages"][2]["tool_calls"][0]["function"] == {
        "name": "gpio_write", "arguments": '{"pin":"porch_light","value":1}'}
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "ok: porch_light=1"}


def test_provider_error_names_the_tier(fake, device):
    fake.responder = lambda req: Reply(status=500)
    device.publish("llm/req", llm_req("e1"))
    ((_, done),) = device.answers("e1")
    assert done["done"] is True
    assert done["err"].startswith("tier 'local' failed: HTTP 500")


def test_budget_bounds_a_slow_tier(fake, device):
    fake.responder = lambda req: Reply(text="late", ttft_ms=3000)
    device.publish("llm/req", llm_req("b1", budget_ms=300))
    ((t, done),) = device.answers("b1", timeout_s=2.0)
    assert "budget_ms=300" in done["err"] and done["tier"] == "local"


def test_long_text_is_trimmed_to_the_device_payload_limit(fake, device):
    fake.responder = lambda req: Reply(text="très long " * 1000)
    device.publish("llm/req", llm_req("t1"))
    ((_, done),) = device.answers("t1")
    encoded = json.dumps(done, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(encoded) <= 4096 and done["text"].startswith("très long") and done["text"].endswith("…")


def test_requests_run_concurrently(fake, device):
    fake.responder = lambda req: Reply(text="ok", ttft_ms=400)
    start = time.monotonic()
    for i in range(4):
        device.publish("llm/req", llm_req(f"c{i}"))
    for i in range(4):
        assert device.answers(f"c{i}")[-1][1]["text"] == "ok"
    assert time.monotonic() - start < 1.2  # 4 x 400 ms in series would be 1.6 s


def test_requests_beyond_the_in_flight_cap_wait_their_turn(fake, bridge, device):
    fake.responder = lambda req: Reply(text="ok", ttft_ms=150)
    bridge.max_in_flight = 1
    try:
        for i in range(4):
            device.publish("llm/req", llm_req(f"q{i}"))
        dones = [device.answers(f"q{i}")[-1] for i in range(4)]
    finally:
        bridge.max_in_flight = 64
    assert [m.get("text") for _, m in dones] == ["ok"] * 4, dones  # none refused as busy
    ends = [t for t, _ in dones]
    assert ends == sorted(ends) and ends[-1] - ends[0] >= 0.3  # one at a time, first come first served


def test_time_spent_waiting_for_a_slot_counts_against_the_budget(fake, bridge, device):
    fake.responder = lambda req: Reply(text="ok", ttft_ms=400)
    bridge.max_in_flight = 1
    try:
        device.publish("llm/req", llm_req("w0"))
        device.publish("llm/req", llm_req("w1", budget_ms=500))
        first, second = device.answers("w0")[-1][1], device.answers("w1")[-1][1]
    finally:
        bridge.max_in_flight = 64
    assert first["text"] == "ok"
    assert "budget_ms=500" in second["err"]  # 400 ms queued + 400 ms to first token > 500 ms


def test_no_manifest_yet(broker, bridge):
    d = Device(broker, "no-manifest")
    try:
        d.publish("llm/req", llm_req("m1"))
        ((_, done),) = d.answers("m1")
        assert done["err"] == "bridge has no manifest for device no-manifest yet"
    finally:
        d.close()


def test_garbage_never_kills_the_bridge(fake, device):
    fake.responder = lambda req: Reply(text="still here")
    unanswerable = [b"not json", b"\xff\xfe\x00", b"[1, 2, 3]", b'"a string"', b"{}",
                    json.dumps({"v": 1, "id": 5, "round": 0}).encode(),
                    json.dumps({"v": 1, "id": "x" * 41, "round": 0}).encode(),
                    b"x" * 100_000]
    answerable = {  # id -> expected fragment of err
        "g-round": (llm_req("g-round", round="zero"), "round must be an integer"),
        "g-msgs": (llm_req("g-msgs", msgs="hi"), "bad request: msgs must be a non-empty list"),
        "g-msg": (llm_req("g-msg", msgs=[{"r": "user", "t": 7}]), "bad request: msgs[0].t must be a string"),
        "g-v": (llm_req("g-v", v=2), "unsupported protocol version v=2"),
        "g-vtrue": (llm_req("g-vtrue", v=True), "unsupported protocol version v=true"),
        "g-class": (llm_req("g-class", **{"class": "urgent"}), "class must be one of"),
        "g-budget": (llm_req("g-budget", budget_ms="soon"), "budget_ms must be a positive integer"),
        "g-big": (llm_req("g-big", pad="y" * 100_000), "request too large"),
        # JSON broken after its id (a firmware that wrote inf): answered, not left to the device's timeout
        "g-inf": (b'{"v":1,"id":"g-inf","round":0,"msgs":[{"r":"user","t":"x"}],"n":inf}', "not JSON"),
    }
    for payload in unanswerable:
        device.publish("llm/req", payload)
    for req, _ in answerable.values():
        device.publish("llm/req", req)
    device.publish("llm/req", llm_req("after"))
    assert device.answers("after")[-1][1]["text"] == "still here"

    seen = device.drain()
    by_id = {}
    for msg in seen:
        by_id.setdefault(msg["id"], []).append(msg)
    assert set(by_id) <= set(answerable), f"answers for unattributable payloads: {by_id}"
    for req_id, (_, fragment) in answerable.items():
        msgs = by_id.get(req_id) or []
        done = [m for m in msgs if m.get("done")]
        assert len(done) == 1 and len(msgs) == 1, (req_id, msgs)
        assert fragment in done[0]["err"], (req_id, done[0])
    assert requests_for(fake, device.id) and len(requests_for(fake, device.id)) == 1  # only "after" went out


def test_cli_bridge_without_tiers_says_how_to_configure(tmp_path):
    """`python -m bridge` as a separate process, on its own broker, plain subscription, no tier configured."""
    b = start_mosquitto(tmp_path / "mosquitto")
    d = Device(b, "cli-dev")
    proc = None
    try:
        d.publish_manifest()  # retained before the bridge starts: it arrives with the subscription
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
               "WISP_BROKER": f"{b.host}:{b.port}", "WISP_SHARED": "0", "WISP_CONFIG": str(tmp_path / "none.toml")}
        (tmp_path / "none.toml").write_text("")
        proc = subprocess.Popen([sys.executable, "-m", "bridge"], env=env, cwd=tmp_path,
                                stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
        log, deadline = [], time.monotonic() + 10
        while not any("bridge ready" in line for line in log):
            assert time.monotonic() < deadline, f"bridge not ready: {log}"
            try:
                log.append(lines.get(timeout=0.5))
            except queue.Empty:
                assert proc.poll() is None, f"bridge exited: {log}"
        assert any(f"broker {b.host}:{b.port}, plain subscription" in line for line in log)

        d.publish("llm/req", llm_req("n1"))
        ((_, done),) = d.answers("n1")
        assert done["done"] is True and "OPENAI_API_KEY" in done["err"] and "WISP_LOCAL_URL" in done["err"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        while not lines.empty():
            log.append(lines.get())
        assert not any("Traceback" in line for line in log), log
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        d.close()
        b.stop()
