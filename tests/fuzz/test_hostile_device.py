"""Hostile messages aimed at one weak spot each, through real mosquitto to the real firmware:
the device must answer as it should afterwards and keep its heap (tests/fuzz/test_fuzz_device.py
throws random ones)."""
import json
import re
import time

import pytest

from tests.e2e.stack import Stack


@pytest.fixture
def stack():
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def _reply(s, dev_id, ask_id, timeout=15):
    return s.probe.wait_for(f"wisp/{dev_id}/reply", lambda r: isinstance(r, dict) and r.get("id") == ask_id,
                            timeout=timeout)


def test_an_ask_id_with_an_escaped_emoji_is_answered_by_the_llm(stack):
    # json.dumps writes an emoji as two escapes, which the device reads as two lone surrogates;
    # the bridge reads them back as the emoji, so its answers named another id than the device waited for
    stack.start_device("hs1")
    # (the id sent, the id the reply echoes: what the device read, each surrogate as 3 bytes)
    for ask_id, echoed in (("porch-\U0001F600", "porch-\ud83d\ude00"), ("lone-\udc00", "lone-\udc00")):
        stack.probe.publish("wisp/hs1/ask", json.dumps({"v": 1, "id": ask_id, "text": "light up the porch, please"}))
        reply = _reply(stack, "hs1", echoed)
        assert reply["ok"] and reply["text"] == "The porch light is on.", reply


def _free_heap(s, dev_id):
    """The device's free heap in bytes, as its system_info tool says (after a collection)."""
    cid = "heap-%d" % time.monotonic_ns()
    s.probe.publish(f"wisp/{dev_id}/cmd", {"v": 1, "id": cid, "tool": "system_info"})
    res = s.probe.wait_for(f"wisp/{dev_id}/cmd/res", lambda r: isinstance(r, dict) and r.get("id") == cid)
    return int(re.search(r"heap (\d+) B free", res["result"]).group(1))


def test_junk_update_offers_leave_no_code_in_the_heap(stack):
    stack.start_device("hs2")
    _free_heap(stack, "hs2")  # the system tools loaded once, as in every figure below
    before = _free_heap(stack, "hs2")
    for payload in (b"junk", b'{"v":1}', b"x" * 5000):
        stack.probe.publish("wisp/hs2/ota/offer", payload)
        stack.probe.wait_for("wisp/hs2/ota/state", lambda st: isinstance(st, dict) and st.get("state") == "refused")
    time.sleep(0.5)  # the refusal is published before the offer's task ends
    after = _free_heap(stack, "hs2")
    assert before - after < 2048, f"{before - after} bytes held after refused offers"


def test_an_answer_with_two_hundred_calls_costs_one_error_result_not_the_heap(stack):
    # each extra call got its own "not run" result: 200 of them, and their log lines, in the heap
    # and in the next round's request
    stack.start_device("hs3", heapsize=256 * 1024)
    stack.bridge.terminate()  # this test answers the device itself
    stack.bridge.wait(5)
    stack.probe.publish("wisp/hs3/ask", {"v": 1, "id": "many", "text": "light up the porch, please"})
    req = stack.probe.wait_for("wisp/hs3/llm/req")
    calls = [{"cid": "a", "tool": "gpio_read", "args": {"pin": "door"}}] + [{}] * 200
    stack.probe.publish("wisp/hs3/llm/res", json.dumps({"v": 1, "id": req["id"], "round": 0, "seq": 0,
                                                        "calls": calls, "done": True}, separators=(",", ":")))
    nxt = stack.probe.wait_for("wisp/hs3/llm/req", lambda r: isinstance(r, dict) and r.get("round") == 1)
    results = [m["t"] for m in nxt["msgs"] if m["r"] == "tool"]
    assert results[0] == "door=1" and len(results) <= 8, results[:8]
    assert "not run" in results[-1]
    stack.probe.publish("wisp/hs3/llm/res", {"v": 1, "id": req["id"], "round": 1, "seq": 0,
                                             "text": "The door is open.", "done": True})
    assert _reply(stack, "hs3", "many")["text"] == "The door is open."


@pytest.mark.parametrize("topic, refusal", [
    ("set/fan", ("event", "set/fan wants ON, OFF or TOGGLE")),
    ("ota/offer", ("ota/state", "offer refused")),
])
def test_a_flood_of_4_kb_documents_does_not_starve_the_link(stack, topic, refusal):
    # set/ takes a word; 4 KB of JSON there (a misdirected automation) was held and copied by
    # each task refusing it, and a flood of offers loaded the update code once per offer, until
    # the link had no heap left to read the next message and dropped the connection
    stack.start_device("hs5", heapsize=256 * 1024)
    junk = b'{"state":"' + b"o" * 4000 + b'"}'
    for _ in range(60):
        stack.probe.publish(f"wisp/hs5/{topic}", junk)
    stack.probe.publish("wisp/hs5/ask", {"v": 1, "id": "after", "text": "is the door open?"})
    assert _reply(stack, "hs5", "after", timeout=10)["text"] == "door is open"
    said = [m["text"] for t, m in stack.probe.drain(0.5) if t == f"wisp/hs5/{refusal[0]}" and isinstance(m, dict)]
    assert said and refusal[1] in said[0], said[:1]
    assert "link lost" not in stack.console("hs5"), stack.console("hs5")[-1000:]


def test_json_of_thousands_of_empty_lists_is_refused_before_it_is_parsed(stack):
    # 4 KB of "[[],[],..." parses into ~52 KB of objects on a 32-bit board, ~104 KB on this port:
    # more than a board has free, and every topic parses its JSON
    stack.start_device("hs6")
    stack.probe.publish("wisp/hs6/ask", b'{"v":1,"id":"wide","text":"hi","pad":[' + b"[]," * 1300 + b"[]]}")
    event = stack.probe.wait_for("wisp/hs6/event", lambda e: isinstance(e, dict) and e.get("kind") == "error")
    assert event["text"] == "payload on wisp/hs6/ask refused: JSON with more than 256 arrays and objects", event
    stack.probe.publish("wisp/hs6/ask", {"v": 1, "id": "after", "text": "is the door open?"})
    assert _reply(stack, "hs6", "after")["text"] == "door is open"
    assert not [r for t, r in stack.probe.seen if t == "wisp/hs6/reply" and r.get("id") == "wide"]


def test_a_call_with_an_infinite_number_goes_back_to_the_model_as_json(stack):
    # 1e999 parses as inf, which MicroPython's json writes as `inf`: the next round's request was no
    # JSON, the bridge dropped it, and the ask failed 30 s later with "no answer from the bridge"
    stack.start_device("hs7")
    stack.bridge.terminate()  # this test answers the device itself
    stack.bridge.wait(5)
    stack.probe.publish("wisp/hs7/ask", {"v": 1, "id": "inf", "text": "is the door open, ask the model"})
    req = stack.probe.wait_for("wisp/hs7/llm/req")
    stack.probe.publish("wisp/hs7/llm/res", b'{"v":1,"id":"%s","round":0,"seq":0,"done":true,"calls":['
                        b'{"cid":"a","tool":"gpio_read","args":{"pin":"door","x":1e999}},'
                        b'{"cid":"b","tool":-1e999}]}' % req["id"].encode())
    nxt = stack.probe.wait_for("wisp/hs7/llm/req", lambda r: isinstance(r, dict) and r.get("round") == 1)
    results = [m["t"] for m in nxt["msgs"] if m["r"] == "tool"]
    assert results == ["Error: unknown argument 'x' for gpio_read", "Error: tool name must be a string"]
