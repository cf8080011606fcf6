# The agent loop against a scripted bridge: rounds, tool calls as they stream, exactly one
# reply per ask, readable errors for bad asks, timeouts, stale answers and the round cap.
import asyncio
import json

from fakeboard import make_device

from wisp import limits
from wisp.agent import Agent


def _call(tool, **args):
    return {"cid": "c_" + tool, "tool": tool, "args": args}


class ScriptedBridge:
    """Answers each llm/req with script(req) -> list of llm/res bodies (id/round filled in)."""

    def __init__(self, dev, agent, script):
        self.reqs = []
        self.agent, self.script = agent, script
        dev.link.on_publish = self._seen

    def _seen(self, topic, payload):
        if topic.endswith("/llm/req"):
            req = json.loads(payload)
            self.reqs.append(req)
            asyncio.create_task(self._answer(req))

    async def _answer(self, req):
        await asyncio.sleep_ms(1)
        for seq, body in enumerate(self.script(req)):
            msg = {"v": 1, "id": req["id"], "round": req["round"], "seq": seq}
            msg.update(body)
            self.agent.on_llm_res(json.dumps(msg))


async def _ask(dev, agent, payload, n_replies=1, timeout_ms=3000):
    task = asyncio.create_task(agent.run())
    agent.on_ask(payload if isinstance(payload, (bytes, type(None))) else json.dumps(payload))
    waited = 0
    while len(dev.link.on("wisp/t1/reply")) < n_replies and waited < timeout_ms:
        await asyncio.sleep_ms(5)
        waited += 5
    await asyncio.sleep_ms(20)  # a second reply would show up here
    task.cancel()
    return dev.link.on("wisp/t1/reply")


def _porch_script(req):
    if req["round"] == 0:
        return [{"calls": [_call("gpio_write", pin="porch_light", value=1)]}, {"done": True, "tier": "fake"}]
    return [{"done": True, "text": "The porch light is on.", "tier": "fake"}]


async def test_tool_call_then_answer_gives_one_reply_and_sets_pin():
    dev = make_device()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, _porch_script)
    replies = await _ask(dev, agent, {"v": 1, "id": "a1", "text": "make the porch bright"})
    if len(replies) != 1:
        raise Exception(replies)
    r = replies[0]
    if not (r["ok"] and r["id"] == "a1" and r["text"] == "The porch light is on." and r["tier"] == "fake"):
        raise Exception(r)
    if dev.board.levels[5] != 1:
        raise Exception("pin not set")
    second = bridge.reqs[1]["msgs"]
    if second[1]["calls"][0]["tool"] != "gpio_write" or second[2] != {"r": "tool", "cid": "c_gpio_write",
                                                                       "t": "ok: porch_light=1"}:
        raise Exception(second)
    if bridge.reqs[0]["hash"] != dev.manifest_hash or dev.manifest_hash is None:
        raise Exception("request does not carry the manifest hash")


async def test_actions_with_the_models_words_need_one_round():
    dev = make_device()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, lambda req: [
        {"calls": [_call("gpio_write", pin="porch_light", value=1)]},
        {"done": True, "text": "Porch light on.", "tier": "fake"}])
    r = (await _ask(dev, agent, {"v": 1, "id": "a1b", "text": "light the porch for the guests"}))[0]
    if not (r["ok"] and r["text"] == "Porch light on.") or len(bridge.reqs) != 1 or dev.board.levels[5] != 1:
        raise Exception((r, bridge.reqs))


async def test_a_read_or_a_failed_action_goes_back_to_the_model_despite_its_words():
    for call in (_call("gpio_read", pin="door"), _call("gpio_write", pin="garage", value=1)):
        dev = make_device()
        agent = Agent(dev)

        def script(req, call=call):
            if req["round"] == 0:
                return [{"calls": [call]}, {"done": True, "text": "Let me check."}]
            return [{"done": True, "text": "after: " + req["msgs"][-1]["t"]}]
        bridge = ScriptedBridge(dev, agent, script)
        r = (await _ask(dev, agent, {"v": 1, "id": "a1c", "text": "door?"}))[0]
        if not r["text"].startswith("after: ") or len(bridge.reqs) != 2:
            raise Exception((r, bridge.reqs))


async def test_bridge_error_becomes_a_failed_reply():
    dev = make_device()
    agent = Agent(dev)
    ScriptedBridge(dev, agent, lambda req: [{"done": True, "err": "no inference tier configured"}])
    r = (await _ask(dev, agent, {"id": "a2", "text": "hello"}))[0]
    if r["ok"] or "no inference tier configured" not in r["text"]:
        raise Exception(r)


async def test_invalid_tool_call_result_goes_back_to_the_llm():
    dev = make_device()
    agent = Agent(dev)

    def script(req):
        if req["round"] == 0:
            return [{"calls": [_call("gpio_write", pin="garage", value=1)], "done": True}]
        return [{"done": True, "text": req["msgs"][-1]["t"]}]
    ScriptedBridge(dev, agent, script)  # answers from the link's on_publish hook
    r = (await _ask(dev, agent, {"id": "a3", "text": "open the garage"}))[0]
    if "Error: pin 'garage' is not configured" not in r["text"]:
        raise Exception(r)


async def test_a_call_that_leaves_out_args_runs_a_tool_that_takes_none():
    # args may be left out, as for a command (any client may answer an unsigned device's llm/res):
    # it was copied to carry the call's origin, and copying None raised an internal error
    dev = make_device()
    agent = Agent(dev)

    def script(req):
        if req["round"] == 0:
            return [{"calls": [{"cid": "c1", "tool": "memory_list"}], "done": True}]
        return [{"done": True, "text": req["msgs"][-1]["t"]}]
    ScriptedBridge(dev, agent, script)
    r = (await _ask(dev, agent, {"id": "a4", "text": "what do you remember?"}))[0]
    if not r["ok"] or r["text"] != "no facts remembered":
        raise Exception(r)


async def test_malformed_asks_get_error_replies():
    for payload, fragment in ((b"not json", "not valid JSON"), (b"[1]", "JSON object"),
                              ({"text": "no id"}, "'id'"), ({"id": "x", "text": ""}, "'text'"),
                              ({"id": "x", "text": "a" * 600}, "longer than"),
                              ({"id": "x", "text": "hi", "v": 9}, "version"),
                              (None, "larger than")):
        dev = make_device()
        agent = Agent(dev)
        replies = await _ask(dev, agent, payload)
        if len(replies) != 1 or replies[0]["ok"] or fragment not in replies[0]["text"]:
            raise Exception((payload, replies))


def test_any_version_but_1_is_refused_alike_true_included():
    # JSON true is a bool, and a bool is an int equal to 1 in Python: it was taken as version 1
    from wisp.agent import parse_ask
    for v, shown in ((2, "2"), ("1", '"1"'), (True, "true"), (False, "false"), (None, "null")):
        got = parse_ask(json.dumps({"v": v, "id": "x", "text": "porch light on"}))
        if got != ("x", None, "Error: protocol version %s not supported (this device speaks v1)" % shown):
            raise Exception((v, got))
    if parse_ask(json.dumps({"v": 1, "id": "x", "text": "hi"})) != ("x", "hi", None):
        raise Exception("v 1 refused")


async def test_silent_bridge_times_out_with_a_clear_reply():
    saved = limits.ROUND_TIMEOUT_MS
    limits.ROUND_TIMEOUT_MS = 150
    try:
        dev = make_device()
        agent = Agent(dev)
        r = (await _ask(dev, agent, {"id": "a4", "text": "hello"}))[0]
    finally:
        limits.ROUND_TIMEOUT_MS = saved
    if r["ok"] or "no answer from the bridge" not in r["text"]:
        raise Exception(r)


async def test_a_bridge_dying_mid_round_leaves_a_reply_that_says_what_ran():
    saved = limits.ROUND_TIMEOUT_MS
    limits.ROUND_TIMEOUT_MS = 300
    try:
        dev = make_device()
        agent = Agent(dev)
        # the first of two calls arrives, then the bridge dies before the second and the done
        ScriptedBridge(dev, agent, lambda req: [{"calls": [_call("gpio_write", pin="porch_light", value=1)]}])
        r = (await _ask(dev, agent, {"id": "a5", "text": "light the porch for the guests and start the fan"}))[0]
    finally:
        limits.ROUND_TIMEOUT_MS = saved
    if r["ok"] or "no answer from the bridge" not in r["text"] or \
            "done before the failure: gpio_write(pin=porch_light,value=1) -> ok: porch_light=1" not in r["text"]:
        raise Exception(r)


async def test_stale_duplicate_and_out_of_order_messages():
    dev = make_device()
    agent = Agent(dev)

    def script(req):
        if req["round"] == 0:
            # seq 1 arrives before seq 0 and seq 0 twice: the call must run exactly once, in order
            return [{"seq": 1, "done": True}, {"seq": 0, "calls": [_call("gpio_write", pin="fan", value=1)]},
                    {"seq": 0, "calls": [_call("gpio_write", pin="fan", value=1)]}]
        return [{"done": True, "text": "fan on"}]

    class OutOfOrder(ScriptedBridge):
        async def _answer(self, req):
            await asyncio.sleep_ms(1)
            self.agent.on_llm_res(json.dumps({"id": "other", "round": 0, "seq": 0, "done": True, "text": "x"}))
            for body in script(req):
                msg = {"v": 1, "id": req["id"], "round": req["round"], "seq": 0}
                msg.update(body)
                self.agent.on_llm_res(json.dumps(msg))
            self.agent.on_llm_res(b"{garbage")
    OutOfOrder(dev, agent, script)
    replies = await _ask(dev, agent, {"id": "a5", "text": "cool the room down"})
    if len(replies) != 1 or replies[0]["text"] != "fan on":
        raise Exception(replies)
    fan_writes = [p for t, p, _r, _q in dev.link.sent if t == "wisp/t1/state/fan"]
    if fan_writes != ["ON"]:
        raise Exception(fan_writes)


async def test_round_cap_stops_an_llm_that_never_answers_in_words():
    dev = make_device()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, lambda req: [{"calls": [_call("gpio_read", pin="door")], "done": True}])
    r = (await _ask(dev, agent, {"id": "a6", "text": "loop"}))[0]
    if r["ok"] or "stopped after %d rounds" % limits.MAX_ROUNDS not in r["text"]:
        raise Exception(r)
    if len(bridge.reqs) != limits.MAX_ROUNDS:
        raise Exception(len(bridge.reqs))


async def test_calls_beyond_the_per_round_cap_are_refused():
    dev = make_device()
    agent = Agent(dev)

    def script(req):
        if req["round"] == 0:
            return [{"calls": [_call("gpio_read", pin="door")] * (limits.MAX_CALLS_PER_ROUND + 2), "done": True}]
        return [{"done": True, "text": "|".join(m["t"] for m in req["msgs"] if m["r"] == "tool")}]
    ScriptedBridge(dev, agent, script)
    r = (await _ask(dev, agent, {"id": "a7", "text": "read a lot"}))[0]
    results = r["text"].split("|")
    if results.count("door=1") != limits.MAX_CALLS_PER_ROUND or "not run" not in results[-1]:
        raise Exception(results)


async def test_full_inbox_refuses_as_busy():
    dev = make_device()
    agent = Agent(dev)  # not running: asks pile up
    for i in range(limits.INBOX_MAX + 1):
        agent.on_ask(json.dumps({"id": "b%d" % i, "text": "hi"}))
    await asyncio.sleep_ms(10)
    replies = dev.link.on("wisp/t1/reply")
    if len(replies) != 1 or replies[0]["id"] != "b%d" % limits.INBOX_MAX or "busy" not in replies[0]["text"]:
        raise Exception(replies)


async def test_fast_path_answers_locally_without_any_llm_request():
    dev = make_device()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, _porch_script)
    r = (await _ask(dev, agent, {"id": "f1", "text": "turn on the porch light"}))[0]
    if not (r["ok"] and r["path"] == "device" and r["text"] == "porch light is on") or dev.board.levels[5] != 1:
        raise Exception(r)
    if bridge.reqs:
        raise Exception("the fast path asked the LLM")
    dev.config["fast_path"] = False  # a user who wants every ask to go to the LLM
    dev.link.sent.clear()
    r = (await _ask(dev, agent, {"id": "f2", "text": "turn on the porch light"}))[0]
    if r["path"] != "llm" or len(bridge.reqs) != 2:
        raise Exception(r)


async def test_between_requests_no_answering_code_holds_heap():
    # answer.py and conversation.py load per request: a command's peak (routine_define,
    # schedule_add) must not sit on top of them. A late llm/res then finds no conversation.
    import sys
    dev = make_device()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, _porch_script)
    replies = await _ask(dev, agent, {"id": "u1", "text": "make the porch bright"})
    if len(replies) != 1 or not replies[0]["ok"] or len(bridge.reqs) != 2:
        raise Exception(replies)
    held = [name for name in ("wisp.answer", "wisp.conversation", "wisp.fastpath") if name in sys.modules]
    if held or agent.conv is not None:
        raise Exception("still loaded after the reply: %r" % held)
    agent.on_llm_res(json.dumps({"v": 1, "id": bridge.reqs[0]["id"], "round": 0, "seq": 0, "done": True}))
    if "wisp.conversation" in sys.modules or agent.conv is not None:
        raise Exception("a late llm/res loaded the conversation")
    replies = await _ask(dev, agent, {"id": "u2", "text": "make the porch bright"}, n_replies=2)
    if len(replies) != 2 or not replies[1]["ok"] or len(bridge.reqs) != 4:
        raise Exception(replies)  # loaded again for the next ask


async def test_a_reply_that_cannot_be_sent_costs_that_reply_not_the_agent():
    dev = make_device()
    agent = Agent(dev)
    real = dev.publish_json
    failed = []

    async def no_heap_once(*args, **kw):
        if not failed:
            failed.append(1)
            raise MemoryError("memory allocation failed, allocating 300 bytes")
        return await real(*args, **kw)
    dev.publish_json = no_heap_once
    task = asyncio.create_task(agent.run())
    agent.on_ask(json.dumps({"id": "n1", "text": "turn on the fan"}))
    agent.on_ask(json.dumps({"id": "n2", "text": "turn off the fan"}))
    await asyncio.sleep_ms(50)
    task.cancel()
    replies = dev.link.on("wisp/t1/reply")
    if not failed or [r["id"] for r in replies] != ["n2"] or not replies[0]["ok"]:
        raise Exception(replies)


async def test_llm_budget_per_hour_is_enforced_on_the_device():
    dev = make_device()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, lambda req: [{"done": True, "text": "hi"}])
    agent.budget.in_hour = agent.budget.per_hour - 1
    agent.budget.hour = int(agent.budget.now()) // 3600
    ok = (await _ask(dev, agent, {"id": "h1", "text": "hello"}))[0]
    refused = (await _ask(dev, agent, {"id": "h2", "text": "hello"}, n_replies=2))[1]
    if not ok["ok"] or refused["ok"] or "per hour" not in refused["text"] or len(bridge.reqs) != 1:
        raise Exception((ok, refused))


async def test_recent_turns_and_facts_travel_with_the_request():
    dev = make_device()

    class Facts:
        def for_prompt(self, max_bytes):
            return ["owner: Ada"]
    dev.memory = Facts()
    agent = Agent(dev)
    bridge = ScriptedBridge(dev, agent, lambda req: [{"done": True, "text": "answer %d" % len(bridge.reqs)}])
    await _ask(dev, agent, {"id": "m1", "text": "first question"})
    await _ask(dev, agent, {"id": "m2", "text": "second question"}, n_replies=2)
    req = bridge.reqs[-1]
    if req["facts"] != ["owner: Ada"]:
        raise Exception(req)
    if req["msgs"] != [{"r": "user", "t": "first question"}, {"r": "asst", "t": "answer 1"},
                       {"r": "user", "t": "second question"}]:
        raise Exception(req["msgs"])


async def test_link_down_gives_a_clear_reply_that_is_delivered_after_reconnect():
    dev = make_device()
    agent = Agent(dev)
    dev.link.up = False
    replies = []
    agent.submit("what's the weather like", "repl", done=replies.append)
    task = asyncio.create_task(agent.run())
    await asyncio.sleep_ms(50)
    if len(replies) != 1 or "unreachable" not in replies[0]["text"]:
        raise Exception(replies)
    agent.on_ask(json.dumps({"id": "o1", "text": "is the door on"}))  # fast path works offline
    await asyncio.sleep_ms(50)
    if dev.outbox.owed[-1][0] != "reply" or json.loads(dev.outbox.owed[-1][1])["text"] != "door is on":
        raise Exception(dev.outbox.owed)
    dev.link.up = True
    await dev.announce()
    if dev.outbox.owed or dev.link.on("wisp/t1/reply")[-1]["id"] != "o1":
        raise Exception("owed reply not sent after reconnect")
    task.cancel()


def test_budget_caps_come_from_config_when_given():
    dev = make_device()
    dev.config["llm_per_hour"] = 5
    dev.config["llm_per_day"] = "lots"  # not a number: the default stands
    agent = Agent(dev)
    if agent.budget.per_hour != 5 or agent.budget.per_day != limits.LLM_CALLS_PER_DAY:
        raise Exception((agent.budget.per_hour, agent.budget.per_day))


async def test_remembered_turns_say_what_was_done_so_a_follow_up_has_context():
    dev = make_device()
    agent = Agent(dev)

    def script(req):
        if len(bridge.reqs) == 1:  # the first ask: an action with the model's words, one round
            return [{"calls": [_call("gpio_write", pin="porch_light", value=1)]},
                    {"done": True, "text": "Porch light on.", "tier": "fake"}]
        return [{"done": True, "text": "Which one?", "tier": "fake"}]
    bridge = ScriptedBridge(dev, agent, script)
    await _ask(dev, agent, {"id": "d1", "text": "light the porch for the guests"})
    await _ask(dev, agent, {"id": "d2", "text": "turn on the fan"}, n_replies=2)  # taken on the device
    await _ask(dev, agent, {"id": "d3", "text": "and turn them off again in ten minutes"}, n_replies=3)
    if len(bridge.reqs) != 2:
        raise Exception(bridge.reqs)
    fan_said = dev.link.on("wisp/t1/reply")[1]["text"]
    want = [{"r": "user", "t": "light the porch for the guests"},
            {"r": "asst", "t": "", "calls": [{"cid": "h1", "tool": "gpio_write",
                                              "args": {"pin": "porch_light", "value": 1}}]},
            {"r": "tool", "cid": "h1", "t": "ok: porch_light=1"},
            {"r": "asst", "t": "Porch light on."},
            {"r": "user", "t": "turn on the fan"},
            {"r": "asst", "t": "", "calls": [{"cid": "h2", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}}]},
            {"r": "tool", "cid": "h2", "t": "ok: fan=1"},
            {"r": "asst", "t": fan_said},
            {"r": "user", "t": "and turn them off again in ten minutes"}]
    if bridge.reqs[1]["msgs"] != want:
        raise Exception(bridge.reqs[1]["msgs"])
    if agent.conv is not None:
        raise Exception("the last ask's conversation (and its full call records) is still held")
    if not all(isinstance(turn, str) for turn in agent.history):  # one block each, not islands of pieces
        raise Exception("turns kept unpacked: %r" % (agent.history,))


def test_what_a_turn_remembers_is_bounded_in_bytes_and_leaves_out_failed_calls():
    from wisp import answer as turns
    agent = Agent(make_device())
    long = "ok: " + "x" * (limits.MAX_RESULT_TEXT - 4)
    ran = [{"cid": "c1", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}, "result": "Error: fan is busy"},
           {"cid": "c2", "tool": "memory_list", "args": None, "result": long},
           {"cid": "c3", "tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}, "result": long},
           {"cid": "c4", "tool": "time_now", "args": {}, "result": "ok: 12:00"}]
    for turn in range(limits.HISTORY_TURNS + 1):
        turns.remember(agent, "ask %d" % turn + "?" * limits.MAX_ASK_TEXT, "answer" * 100, ran)
    if len(agent.history) != limits.HISTORY_TURNS or not agent.history[0][0].startswith("ask 1"):
        raise Exception(agent.history)
    msgs = turns.context(agent)
    for user, answer, did in agent.history:
        size = sum(len(tool) + len(json.dumps(args)) + len(result) for tool, args, result in did)
        if not did or size > limits.HISTORY_DID or did[0][0] != "memory_list" or did[0][1] != {}:
            raise Exception((size, did))
        if len(user) > limits.HISTORY_TEXT or len(answer) > limits.HISTORY_TEXT:
            raise Exception((user, answer))
    cids = [c["cid"] for m in msgs for c in m.get("calls", ())]
    results = [m["cid"] for m in msgs if m["r"] == "tool"]
    if cids != results or len(set(cids)) != len(cids) or any(m["t"].startswith("Error") for m in msgs):
        raise Exception(msgs)


def test_a_request_goes_out_in_small_pieces_that_join_into_its_json():
    # A heap that has run for hours is free in small holes: the request must not need one block
    # as big as itself (history and facts make it 2 KB and more).
    from wisp.conversation import _pieces
    turn = {"r": "user", "t": "x" * 150}
    req = {"v": 1, "id": "a1.0f0f0f", "round": 0, "msgs": [turn] * 12, "class": "interactive",
           "budget_ms": 30000, "hash": "abc", "facts": ["owner: Ada", "pet: Rex \u2713"]}
    pieces = _pieces(req)
    if len(pieces) < 8 or max(len(p) for p in pieces) > 256 + len(json.dumps(turn)):
        raise Exception([len(p) for p in pieces])
    if json.loads("".join(pieces)) != req:
        raise Exception("".join(pieces))
