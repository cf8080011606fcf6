"""The bridge survives any payload on the topics it reads (llm/req, manifest) and still
answers a real device afterwards. (Shortened count; bench/fuzz.py runs 10,000 per topic.)"""
import os

from tests.e2e.stack import Stack
from tests.fuzz.payloads import generate

PER_TOPIC = int(os.environ.get("WISP_FUZZ_COUNT", "300"))


def fuzz_bridge(stack, per_topic, seed=2):
    sent = 0
    for kind, topic in (("llm/req", "wisp/fzb/llm/req"), ("manifest", "wisp/fzb/manifest"),
                        ("llm/req", "wisp/other/llm/req")):
        for payload in generate(kind, per_topic, seed):
            stack.probe.client.publish(topic, payload, qos=1)
            sent += 1
            if sent % 50 == 0:
                stack.probe.client.publish("wisp/fzb/fuzzmark", b"", qos=1).wait_for_publish(10)
    stack.probe.client.publish("wisp/fzb/manifest", b"", qos=1, retain=True).wait_for_publish(10)
    return sent


def test_bridge_survives_hostile_payloads_and_still_answers_a_device():
    s = Stack()
    try:
        fuzz_bridge(s, PER_TOPIC)
        s.start_device("after")
        s.probe.publish("wisp/after/ask", {"v": 1, "id": "q1", "text": "it is getting dark, light up the porch please"})
        reply = s.probe.wait_for("wisp/after/reply", lambda r: isinstance(r, dict) and r.get("id") == "q1", timeout=30)
        assert reply["ok"] and reply["path"] == "llm", reply
        assert s.bridge.poll() is None, s.bridge_log()[-2000:]
        assert "Traceback" not in s.bridge_log()
    finally:
        s.close()
