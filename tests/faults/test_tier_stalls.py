"""Provider timeouts and stalls on the real stack (firmware on the unix port, mosquitto, the bridge
process, the fake tier): a first token later than the tier's deadline and a stream that stalls
mid-answer each give the device exactly one clear error reply, or, with a second tier configured,
one hedged or failed-over success; no action runs twice either way."""
import time

from tests.e2e.stack import Stack
from tests.fakes.openai_server import Reply
from tests.faults.test_faults import LLM_ASK, ask, replies_for, tool_runs

DEADLINE_S = 1.0   # first_token_timeout_s and idle_timeout_s of the slow tier: keeps the file fast
LATE_MS = 4000     # a first token or a stall well past that deadline
REPLY_WAIT_S = 20  # two attempts of DEADLINE_S each, plus the device's round trip, with margin

ONE_TIER = """
[tiers.local]
base_url = "{url}"
model = "slow-model"
first_token_timeout_s = {deadline}
idle_timeout_s = {deadline}
"""
TWO_TIERS = ONE_TIER + """
[tiers.premium]
base_url = "{url}"
model = "fast-model"

[routes]
interactive = ["local", "premium"]

[routing]
hedge = {hedge}
"""


class TierStack(Stack):
    """A Stack whose bridge reads a wisp.toml naming the fake tier's URL (known only once it runs)."""

    def __init__(self, responder, toml, **fmt):
        self.toml, self.fmt = toml, fmt
        super().__init__(responder=responder)

    def start_bridge(self):
        path = self.dir / "wisp.toml"
        path.write_text(self.toml.format(url=self.base_url, deadline=DEADLINE_S, **self.fmt))
        self.bridge_env["WISP_CONFIG"] = str(path)
        super().start_bridge()


def porch(**timing):
    """Turns the porch light on, then says so; `timing` (ttft_ms, stall_ms) applies to the slow model."""
    def responder(request):
        slow = request.get("model") == "slow-model"
        if request["messages"][-1]["role"] == "user":
            return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})], **(timing if slow else {}))
        return Reply(text="The porch light is on.", **(timing if slow else {}))
    return responder


def answer_once(stack, dev_id, ask_id, text=LLM_ASK):
    stack.start_device(dev_id)
    started = time.monotonic()
    ask(stack, dev_id, ask_id, text)
    got = replies_for(stack, dev_id, ask_id, REPLY_WAIT_S)
    return got, time.monotonic() - started


def still_answers(stack, dev_id):
    ask(stack, dev_id, "after", "turn on the porch light")  # the device's own fast path: no tier
    return stack.probe.wait_for(f"wisp/{dev_id}/reply", lambda r: r.get("id") == "after", 10)["ok"]


def test_first_token_past_the_deadline_gives_one_clear_error():
    s = TierStack(porch(ttft_ms=LATE_MS), ONE_TIER)
    try:
        got, took = answer_once(s, "ts1", "late1")
        assert len(got) == 1, got
        assert got[0]["ok"] is False and "no first token within" in got[0]["text"], got[0]
        assert "local" in got[0]["text"]
        assert took < LATE_MS / 1000 * 2  # the deadline cut it short, nobody waited for the late token
        assert tool_runs(s, "ts1") == 0
        assert len(s.fake.requests) == 2  # the tier was tried again once, then the user was told
        assert still_answers(s, "ts1")
    finally:
        s.close()


def test_a_stream_stalled_mid_answer_gives_one_clear_error():
    def responder(request):
        return Reply(text="Let me think about the meaning of this for a long while", stall_ms=LATE_MS,
                     chunk_delay_ms=10)
    s = TierStack(responder, ONE_TIER)
    try:
        got, took = answer_once(s, "ts2", "stall1", "what is the meaning of this")
        assert len(got) == 1, got
        assert got[0]["ok"] is False and "idle for more than" in got[0]["text"], got[0]
        assert "long while" not in got[0]["text"]  # half an answer from a failed attempt is not the answer
        assert took < LATE_MS / 1000 * 2
        assert still_answers(s, "ts2")
    finally:
        s.close()


def test_a_stall_inside_a_tool_call_runs_nothing_and_says_so():
    s = TierStack(porch(stall_ms=LATE_MS), ONE_TIER)
    try:
        got, _ = answer_once(s, "ts3", "stall2")
        assert len(got) == 1 and got[0]["ok"] is False, got
        assert "idle for more than" in got[0]["text"], got[0]
        assert tool_runs(s, "ts3") == 0  # a half-streamed call is never executed
        assert still_answers(s, "ts3")
    finally:
        s.close()


def test_a_late_first_token_is_hedged_on_the_second_tier():
    # local's first token would come after LATE_MS (inside its deadline of 10 s): the hedge wins
    s = TierStack(porch(ttft_ms=LATE_MS), TWO_TIERS.replace("first_token_timeout_s = {deadline}",
                                                            "first_token_timeout_s = 10\nhedge_after_s = 0.3"),
                  hedge="true")
    try:
        got, took = answer_once(s, "ts4", "hedge1")
        assert len(got) == 1 and got[0]["ok"], got
        assert got[0]["tier"] == "premium", got[0]
        assert took < LATE_MS / 1000  # did not wait for the slow tier
        assert tool_runs(s, "ts4") == 1
    finally:
        s.close()


def test_a_timed_out_tier_fails_over_to_the_second_without_hedging():
    s = TierStack(porch(ttft_ms=LATE_MS), TWO_TIERS, hedge="false")
    try:
        got, took = answer_once(s, "ts5", "over1")
        assert len(got) == 1 and got[0]["ok"], got
        assert got[0]["tier"] == "premium", got[0]
        assert DEADLINE_S <= took < LATE_MS / 1000 + DEADLINE_S
        assert tool_runs(s, "ts5") == 1
    finally:
        s.close()


def test_a_stall_in_the_follow_up_round_fails_over_and_the_action_runs_once():
    """Round 1 switches the light; the tier then stalls on the round that reads the result: the
    second tier finishes the conversation, and round 1's action is not repeated."""
    def responder(request):
        if request["messages"][-1]["role"] == "user":
            return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})])
        stall = LATE_MS if request.get("model") == "slow-model" else 0
        return Reply(text="The porch light is on.", stall_ms=stall)
    s = TierStack(responder, TWO_TIERS, hedge="false")
    try:
        got, _ = answer_once(s, "ts6", "stall3")
        assert len(got) == 1 and got[0]["ok"], got
        assert got[0]["tier"] == "premium" and got[0]["text"] == "The porch light is on.", got[0]
        assert tool_runs(s, "ts6") == 1
    finally:
        s.close()


def test_a_stall_after_a_call_was_forwarded_is_not_retried_so_nothing_runs_twice():
    def responder(request):
        if request["messages"][-1]["role"] == "user":
            # the first call completes (and reaches the device), then the stream stalls in the second
            return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1}),
                                ("gpio_write", {"pin": "fan", "value": 1})],
                         stall_ms=LATE_MS, stall_at_chunk=7)
        return Reply(text="done")
    s = TierStack(responder, TWO_TIERS, hedge="false")
    try:
        got, _ = answer_once(s, "ts7", "fwd1")
        assert len(got) == 1 and got[0]["ok"] is False, got
        assert "not retried so that no action runs twice" in got[0]["text"]
        assert "done before the failure: gpio_write(pin=porch_light" in got[0]["text"]  # the user learns what ran
        assert s.console("ts7").count("tool gpio_write(pin=porch_light") == 1  # ran once, never again
        assert "tool gpio_write(pin=fan" not in s.console("ts7")              # the cut call never ran
        assert still_answers(s, "ts7")
    finally:
        s.close()


def test_a_model_slower_than_the_device_waits_is_named_not_the_bridge():
    """A CPU-bound local model that has not answered when the device's round time (30 s) is up: the user is told
    the tier was too slow, before the device gives up, not "no answer from the bridge (is a bridge running?)"."""
    s = TierStack(porch(ttft_ms=40_000), ONE_TIER.replace("{deadline}", "60"))
    try:
        s.start_device("ts8")
        ask(s, "ts8", "slow1")
        got = replies_for(s, "ts8", "slow1", 45)
        assert len(got) == 1 and got[0]["ok"] is False, got
        assert got[0]["text"] == "Error: tier 'local' did not finish within budget_ms=30000", got[0]
        assert tool_runs(s, "ts8") == 0
    finally:
        s.close()
