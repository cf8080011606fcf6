"""Fault injection on the real stack (firmware on the unix port, mosquitto, the bridge process,
the fake tier): the device's network cut under it, the broker restarted mid-conversation, the
tier failing in every way. Every ask gets exactly one reply; no action runs twice."""
import pytest

from tests.e2e.stack import Stack
from tests.fakes.openai_server import Reply
from tests.faults.netcut import NetCut
from tests.support import until

LLM_ASK = "it is getting dark, light up the porch please"


def slow_porch(ttft_ms):
    def responder(request):
        if request["messages"][-1]["role"] == "user":
            return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})], ttft_ms=ttft_ms)
        return Reply(text="The porch light is on.")
    return responder


def tool_runs(stack, dev_id):
    return stack.console(dev_id).count("tool gpio_write(")


def replies_for(stack, dev_id, ask_id, timeout, linger=2.0):
    """Every reply to ask_id: waits up to `timeout` for the first, then `linger` s for a second."""
    topic = f"wisp/{dev_id}/reply"
    try:
        first = [stack.probe.wait_for(topic, lambda p: isinstance(p, dict) and p.get("id") == ask_id, timeout)]
    except TimeoutError:
        return []
    return first + [p for t, p in stack.probe.drain(linger)
                    if t == topic and isinstance(p, dict) and p.get("id") == ask_id]


def ask(stack, dev_id, ask_id, text=LLM_ASK):
    stack.probe.publish(f"wisp/{dev_id}/ask", {"v": 1, "id": ask_id, "text": text})


def tier_has_the_request(stack):
    """Until the fake tier has received the first model call: the bridge holds the request now."""
    until(lambda: stack.fake.requests, 10, "the tier to receive the request")


def test_network_cut_under_the_device_then_restored():
    s = Stack()
    cable = NetCut(s.broker.host, s.broker.port)
    try:
        s.start_device("nc1", extra={"broker": {"host": cable.host, "port": cable.port}})
        cable.cut()
        assert s.probe.wait_for("wisp/nc1/status", lambda st: st.get("state") == "offline", timeout=10)
        cable.wait_refused(2)  # the device keeps trying while the cable is out
        cable.restore()
        assert s.probe.wait_for("wisp/nc1/status", lambda st: st.get("state") == "online", timeout=30)
        ask(s, "nc1", "n1", "turn on the porch light")
        assert s.probe.wait_for("wisp/nc1/reply", lambda r: r.get("id") == "n1")["ok"]
    finally:
        cable.close()
        s.close()


def test_network_cut_while_the_tier_is_answering_gives_one_reply_and_one_action():
    s = Stack(responder=slow_porch(ttft_ms=1500))
    cable = NetCut(s.broker.host, s.broker.port)
    try:
        s.start_device("nc2", extra={"broker": {"host": cable.host, "port": cable.port}})
        ask(s, "nc2", "n2")
        tier_has_the_request(s)
        cable.cut()
        # the tier's answer reaches a broker the device is not on (request ids are "<ask id>.<nonce>")
        s.probe.wait_for("wisp/nc2/llm/res", lambda m: isinstance(m, dict) and str(m.get("id")).startswith("n2."),
                         timeout=15)
        cable.wait_refused(1)
        cable.restore()
        got = replies_for(s, "nc2", "n2", 40)
        assert len(got) == 1, got
        assert tool_runs(s, "nc2") <= 1
        if got[0]["ok"]:
            assert tool_runs(s, "nc2") == 1
        else:
            assert "bridge" in got[0]["text"] or "unreachable" in got[0]["text"]
    finally:
        cable.close()
        s.close()


def test_broker_restart_mid_conversation_gives_one_reply_and_one_action():
    s = Stack(responder=slow_porch(ttft_ms=1000))
    try:
        s.start_device("br1")
        ask(s, "br1", "b1")
        tier_has_the_request(s)
        s.restart_broker(down_s=1.5)
        got = replies_for(s, "br1", "b1", 45)
        assert len(got) == 1, got
        assert tool_runs(s, "br1") <= 1
    finally:
        s.close()


@pytest.mark.parametrize("failure, words", [
    (Reply(status=500), "500"),
    (Reply(status=429), "429"),
    (Reply(text="partial answer that never ends", cut_after_chunks=2), "tier"),
    (Reply(text="hello there", malformed=True), "tier"),
])
def test_tier_failures_reach_the_user_as_one_clear_error(failure, words):
    s = Stack(responder=lambda request: failure)
    try:
        s.start_device("tf1")
        ask(s, "tf1", "t1", "what is the meaning of this")
        got = replies_for(s, "tf1", "t1", 12)
        assert len(got) == 1, got
        assert got[0]["ok"] is False and words in got[0]["text"], got[0]
        ask(s, "tf1", "t2", "turn on the porch light")   # and the device is fine
        assert s.probe.wait_for("wisp/tf1/reply", lambda r: r.get("id") == "t2")["ok"]
    finally:
        s.close()


def test_bridge_killed_mid_stream_another_bridge_answers_the_resent_request():
    s = Stack(responder=slow_porch(ttft_ms=1500))
    try:
        s.start_device("bk1")
        ask(s, "bk1", "k1")
        tier_has_the_request(s)              # bridge A holds the request, the tier is thinking
        s.bridge.kill()                      # A dies mid-stream, nothing was answered
        s.bridge.wait()
        s.start_bridge()                     # B: a fresh bridge on the same broker
        got = replies_for(s, "bk1", "k1", 40)
        assert len(got) == 1 and got[0]["ok"], got   # the device re-sent; B answered
        assert tool_runs(s, "bk1") == 1
    finally:
        s.close()
