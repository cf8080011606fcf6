"""One ask travels device -> broker -> bridge -> LLM tier -> device -> GPIO, on real parts."""
import json

import pytest

from tests.e2e.stack import Stack


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        s.start_device("dev1")
        yield s


def _replies(stack, ask_id, seconds=0.5):
    return [p for t, p in stack.probe.drain(seconds) if t == "wisp/dev1/reply" and p.get("id") == ask_id]


LLM_ASK = "it is getting dark, light up the porch please"


def test_wisp_ask_goes_through_the_llm_and_sets_the_pin(stack):
    stack.probe.drain(0.1)
    done = stack.wisp("ask", "dev1", LLM_ASK, "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["ok"] is True
    assert reply["text"] == "The porch light is on."
    assert reply["tier"] == "local" and reply["path"] == "llm"
    assert stack.probe.wait_for("wisp/dev1/state/porch_light", lambda s: s == "ON") == "ON"
    # exactly one reply for the ask
    seen = [p for t, p in stack.probe.seen if t == "wisp/dev1/reply" and p["id"] == reply["id"]]
    assert len(seen) + len(_replies(stack, reply["id"])) == 1
    # the tier saw the device's tools and the tool result in the second round
    first, second = stack.fake.requests[-2:]
    assert {"gpio_write", "gpio_read"} <= {t["function"]["name"] for t in first["tools"]}
    assert second["messages"][-1]["role"] == "tool" and second["messages"][-1]["content"] == "ok: porch_light=1"


def test_an_action_with_the_models_words_is_answered_in_one_round(stack):
    from tests.fakes.openai_server import Reply
    saved = stack.fake.responder
    stack.fake.responder = lambda req: Reply(text="Porch light off.",
                                             calls=[("gpio_write", {"pin": "porch_light", "value": 0})])
    try:
        before = len(stack.fake.requests)
        done = stack.wisp("ask", "dev1", "the guests have left, put out the porch lamp please", "--json")
    finally:
        stack.fake.responder = saved
    reply = json.loads(done.stdout)
    assert reply["ok"] is True and reply["text"] == "Porch light off." and reply["path"] == "llm"
    assert stack.probe.wait_for("wisp/dev1/state/porch_light", lambda s: s == "OFF") == "OFF"
    assert len(stack.fake.requests) - before == 1  # no second round just to say so
    offered = {t["function"]["name"] for t in stack.fake.requests[-1]["tools"]}
    assert "more_tools" in offered and "routine_define" not in offered  # the rest come by family


def test_cli_prints_the_answer_for_a_person(stack):
    done = stack.wisp("ask", "dev1", LLM_ASK)
    assert done.returncode == 0
    assert done.stdout.startswith("The porch light is on. [llm/local, ")


def test_simple_pin_requests_take_the_fast_path_without_the_llm(stack):
    asked_before = len(stack.fake.requests)
    done = stack.wisp("ask", "dev1", "turn off the porch light", "--json")
    reply = json.loads(done.stdout)
    assert reply["ok"] and reply["path"] == "device" and reply["text"] == "porch light is off"
    assert stack.probe.wait_for("wisp/dev1/state/porch_light", lambda s: s == "OFF") == "OFF"
    done = stack.wisp("ask", "dev1", "is the porch light on?", "--json")
    assert json.loads(done.stdout)["text"] == "porch light is off"
    assert len(stack.fake.requests) == asked_before


def test_bad_payloads_get_error_replies_and_the_device_keeps_working(stack):
    stack.probe.drain(0.1)
    stack.probe.publish("wisp/dev1/ask", b"\xff\xfe not json")
    stack.probe.publish("wisp/dev1/ask", {"id": "big", "text": "x" * 10000})
    stack.probe.publish("wisp/dev1/ask", {"id": "typed", "text": 42})
    stack.probe.publish("wisp/dev1/llm/res", b"{{{{")
    stack.probe.publish("wisp/dev1/llm/res", {"id": "nobody", "round": 0, "seq": 0, "done": True})
    errors = [stack.probe.wait_for("wisp/dev1/reply", lambda r: not r["ok"]) for _ in range(3)]
    texts = " | ".join(r["text"] for r in errors)
    assert "not valid JSON" in texts and "larger than 4096 bytes" in texts and "'text'" in texts
    event = stack.probe.wait_for("wisp/dev1/event")
    assert "refused" in event["text"]
    done = stack.wisp("ask", "dev1", LLM_ASK, "--json")
    assert json.loads(done.stdout)["ok"] is True


def test_unknown_device_is_a_clear_cli_error(stack):
    done = stack.wisp("ask", "nosuchdev", "hello")
    assert done.returncode == 3
    assert "no device 'nosuchdev'" in done.stderr


def test_killed_device_goes_offline_through_its_last_will(stack):
    proc = stack.start_device("dev2")
    proc.kill()
    status = stack.probe.wait_for("wisp/dev2/status", lambda s: s.get("state") == "offline", timeout=10)
    assert status == {"v": 1, "state": "offline"}
    done = stack.wisp("ask", "dev2", "hello")
    assert done.returncode == 3 and "offline" in done.stderr


def test_no_tier_configured_gets_a_clear_reply_and_the_device_stays_up():
    s = Stack(with_tier=False)
    try:
        s.start_device("lonely")
        for _ in range(2):  # still answering after the first refusal
            done = s.wisp("ask", "lonely", LLM_ASK, "--json")
            reply = json.loads(done.stdout)
            assert done.returncode == 1 and reply["ok"] is False
            assert "OPENAI_API_KEY" in reply["text"] and "WISP_LOCAL_URL" in reply["text"]
        assert s.devices["lonely"].poll() is None
    finally:
        s.close()


def test_device_reconnects_after_the_broker_restarts():
    s = Stack()
    try:
        s.start_device("phoenix")
        s.restart_broker(down_s=1.0)
        # persistence is off: the retained status can only come from the device reconnecting
        s.probe.wait_for("wisp/phoenix/status", lambda st: st.get("state") == "online", timeout=20)
        s.probe.wait_for("wisp/phoenix/manifest", timeout=5)
        s.wait_bridge_subscribed(times=2)  # the bridge reconnects on its own backoff
        done = s.wisp("ask", "phoenix", LLM_ASK, "--json", timeout=90)
        assert json.loads(done.stdout)["ok"] is True, done.stdout + done.stderr
    finally:
        s.close()


def test_wisp_cmd_runs_a_tool_and_reports_errors(stack):
    done = stack.wisp("cmd", "dev1", "gpio_write", "pin=fan", "value=1")
    assert done.returncode == 0 and done.stdout.strip() == "ok: fan=1", done.stdout + done.stderr
    assert stack.probe.wait_for("wisp/dev1/state/fan", lambda v: v == "ON") == "ON"
    done = stack.wisp("cmd", "dev1", "gpio_write", "pin=garage", "value=1")
    assert done.returncode == 1 and "'garage' is not configured" in done.stdout
    done = stack.wisp("cmd", "dev1", "gpio_write", "pin")
    assert done.returncode == 2 and "name=value" in done.stderr


def test_remembered_facts_and_recent_turns_reach_the_llm(stack):
    done = stack.wisp("cmd", "dev1", "memory_set", "key=owner", "value=Ada")
    assert done.returncode == 0, done.stdout
    done = stack.wisp("ask", "dev1", LLM_ASK, "--json")
    assert json.loads(done.stdout)["ok"]
    first_round = [r for r in stack.fake.requests if r["messages"][-1]["role"] == "user"][-1]
    system = first_round["messages"][0]
    assert system["role"] == "system" and "- owner: Ada" in system["content"]
    assert "not instructions" in system["content"]
    # the earlier ask and its answer came along as context
    assert any(m["role"] == "assistant" and m.get("content") == "The porch light is on."
               for m in first_round["messages"][1:-1])


def test_an_emoji_escaped_as_pythons_json_writes_it_reaches_the_llm(stack):
    """json.dumps (ensure_ascii, its default) sends an emoji as the escapes "\\ud83c\\udf31". MicroPython's json
    reads them as two lone surrogates and writes each as 3 bytes, which is not UTF-8: the tier could not be sent
    that ask, nor any ask at all while a fact holding one was remembered."""
    stack.probe.publish("wisp/dev1/cmd", {"v": 1, "id": "plant", "tool": "memory_set",
                                          "args": {"key": "plant", "value": "\U0001F331 basil"}})
    res = stack.probe.wait_for("wisp/dev1/cmd/res", lambda r: isinstance(r, dict) and r.get("id") == "plant")
    assert res["ok"], res
    try:
        for ask_id, text in (("emoji1", "light up the porch please \U0001F600"), ("emoji2", LLM_ASK)):
            stack.probe.publish("wisp/dev1/ask", {"v": 1, "id": ask_id, "text": text})
            reply = stack.probe.wait_for("wisp/dev1/reply", timeout=30,
                                         match=lambda r, i=ask_id: isinstance(r, dict) and r.get("id") == i)
            assert reply["ok"] and reply["text"] == "The porch light is on.", reply
            first_round = [r for r in stack.fake.requests if r["messages"][-1]["role"] == "user"][-1]
            assert first_round["messages"][-1]["content"] == text
            assert "- plant: \U0001F331 basil" in first_round["messages"][0]["content"]
    finally:
        stack.probe.publish("wisp/dev1/cmd", {"v": 1, "id": "unplant", "tool": "memory_delete",
                                              "args": {"key": "plant"}})
        stack.probe.wait_for("wisp/dev1/cmd/res", lambda r: isinstance(r, dict) and r.get("id") == "unplant")
