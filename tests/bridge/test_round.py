"""A device round in-process: invalid tool calls handed back to the model, duplicates, cost rows and budgets."""
import asyncio
import json
import sqlite3
import time

import pytest

from bridge.config import Tier
from bridge.reasons import Reason
from bridge.rounds.handler import handle_llm_request
from bridge.rounds.round import SENT_NOTE
from bridge.routing.router import Verdict
from tests.bridge.harness import PORCH_ON, ask, bridge_ctx, config, fake_tiers, llm_req, manifest, run
from tests.fakes.openai_server import Reply

GARAGE = ("gpio_write", {"pin": "garage", "value": 1})


def one_ask(tmp_path, replies, req_id):
    """The llm/res messages of one device round against a fake tier answering with `replies` in turn (or the
    same Reply every time), and that tier (its .requests)."""
    script = iter(replies) if isinstance(replies, list) else None
    with fake_tiers(lambda req: next(script) if script else replies) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, req_id)
        return run(go()), a


def test_invalid_call_goes_back_to_the_model_not_to_the_device(tmp_path):
    msgs, a = one_ask(tmp_path, [Reply(calls=[PORCH_ON, GARAGE]), Reply(text="Only the porch light exists.")], "v1")
    forwarded = [c for m in msgs for c in m.get("calls", [])]
    assert [c["args"] for c in forwarded] == [PORCH_ON[1]]  # the garage call never reached the device
    assert msgs[-1]["text"] == "Only the porch light exists." and "err" not in msgs[-1]
    follow_up = a.requests[1]["messages"]
    assert [m["role"] for m in follow_up[-3:]] == ["assistant", "tool", "tool"]
    assert follow_up[-2]["content"] == SENT_NOTE
    assert follow_up[-1]["content"] == "Error: gpio_write: 'pin' must be one of 'porch_light', got 'garage'"


def test_a_model_that_never_corrects_gets_a_clear_error(tmp_path):
    msgs, a = one_ask(tmp_path, Reply(calls=[("unlock_door", {})]), "v2")
    assert len(msgs) == 1 and "unknown tool 'unlock_door'" in msgs[0]["err"]
    assert "did not correct it in 2 follow-up turn(s)" in msgs[0]["err"]
    assert len(a.requests) == 3


def test_arguments_nested_past_what_json_reads_go_back_to_the_model_as_invalid(tmp_path):
    """A small local model caught in a loop writes "[[[[..." until its token limit: that is invalid arguments,
    handed back for a correction like any other, not an internal error of the bridge."""
    looping = Reply(calls=[("gpio_write", "[" * 3000)], arg_piece_len=500)
    msgs, a = one_ask(tmp_path, [looping, Reply(text="Sorry, done.")], "v9")
    assert msgs[-1]["text"] == "Sorry, done." and "err" not in msgs[-1], msgs
    assert not [c for m in msgs for c in m.get("calls", [])]  # nothing reached the device
    assert a.requests[1]["messages"][-1]["content"].startswith("Error: gpio_write: arguments are not valid JSON")


@pytest.mark.parametrize("raw, why", [('{"pin": "porch_light", "value": NaN}', "NaN is not a JSON value"),
                                      ('{"pin": "porch_light", "value": -Infinity}', "-Infinity is not a JSON value"),
                                      ('{"pin": "porch_light", "value": 1e999}', "1e999 is out of range")])
def test_numbers_json_has_not_go_back_to_the_model_not_on_as_null(tmp_path, raw, why):
    """Python reads NaN, Infinity and 1e999 (as infinity); sent on, the device would get null, a value the model
    never wrote. They are invalid arguments, handed back for a correction."""
    msgs, a = one_ask(tmp_path, [Reply(calls=[("gpio_write", raw)]), Reply(text="Sorry, done.")], "v10")
    assert not [c for m in msgs for c in m.get("calls", [])]  # nothing reached the device
    assert msgs[-1]["text"] == "Sorry, done."
    told = a.requests[1]["messages"][-1]["content"]
    assert told.startswith("Error: gpio_write: arguments are not valid JSON") and why in told, told


def test_a_tier_still_silent_is_reported_before_the_device_stops_waiting(tmp_path):
    """budget_ms is how long the device waits, counted from its send. A tier slower than that (a CPU-bound local
    model, say) is the bridge's to report inside the budget: at its end, the device has given up already and
    tells the user "no answer from the bridge (is a bridge running?)" of a bridge that is up."""
    budget_s = 5.0
    with fake_tiers(lambda req: Reply(text="too late", ttft_ms=budget_s * 2000)) as (a,):
        cfg = config([Tier("local", a.base_url, "m", first_token_timeout_s=60)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                sent = time.monotonic()
                msgs = await ask(ctx, "v12", budget_ms=int(budget_s * 1000))
                return msgs, time.monotonic() - sent
        msgs, took = run(go())
    assert len(msgs) == 1 and "tier 'local' did not finish within budget_ms=5000" in msgs[0]["err"], msgs
    assert took < budget_s, took  # with room for the way back to the device


def test_duplicate_while_running_is_ignored_and_after_done_is_replayed(tmp_path):
    with fake_tiers(lambda req: Reply(calls=[PORCH_ON], ttft_ms=200)) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                first = asyncio.create_task(handle_llm_request("dev1", llm_req("r1"), ctx))
                await asyncio.sleep(0.05)
                await handle_llm_request("dev1", llm_req("r1"), ctx)  # re-sent while streaming
                await first
                once = list(ctx.publish.of("r1"))
                await handle_llm_request("dev1", llm_req("r1"), ctx)  # re-sent after the answer
                return once, ctx.publish.of("r1")
        once, total = run(go())
    assert [m["seq"] for m in once] == [0, 1]
    assert total == once + once  # the same messages again, same seqs: no second model call
    assert len(a.requests) == 1


def test_cost_rows_per_device_and_tier_and_daily_budget(tmp_path):
    with fake_tiers(lambda req: Reply(text="ok")) as (a,):
        local = Tier("local", a.base_url, "m", price_in=1000.0, price_out=2000.0)  # USD per million tokens
        cfg = config([local], tmp_path, daily_budget_usd=0.05, devices={"rich": 100.0})

        async def go():
            async with bridge_ctx(cfg, device_id="dev1") as ctx:
                first = await ask(ctx, "c1")
                refused = await ask(ctx, "c2")
                ctx.manifests.update("rich", json.dumps(manifest("rich")).encode())
                rich = [await ask(ctx, f"k{i}", device_id="rich") for i in range(2)]
                ctx.costs.flush()
                return first, refused, rich, ctx.costs.totals("device"), ctx.costs.totals("tier")
        first, refused, rich, by_device, by_tier = run(go())
    usage = first[-1]["usage"]
    assert usage["in"] > 50  # the system prompt alone is longer than that
    assert "daily budget of $0.05 for device dev1 is used up" in refused[-1]["err"]
    assert all(r[-1]["text"] == "ok" for r in rich)
    expected = (usage["in"] * 1000 + usage["out"] * 2000) / 1e6
    (dev1,) = [row for row in by_device if row[0] == "dev1"]
    assert dev1[1:4] == (1, usage["in"], usage["out"]) and abs(dev1[4] - expected) < 1e-9
    assert by_tier[0][0] == "local" and by_tier[0][1] == 3
    with sqlite3.connect(tmp_path / "cost.db") as db:
        assert db.execute("SELECT COUNT(*) FROM usage WHERE estimated = 0").fetchone() == (3,)
    assert len(a.requests) == 3  # the refused request cost nothing


def test_each_round_reports_one_typed_outcome_and_each_attempt_its_verdict(tmp_path):
    script = iter([Reply(calls=[PORCH_ON]), Reply(calls=[("unlock_door", {})])])
    with fake_tiers(lambda req: next(script, Reply(calls=[("unlock_door", {})]))) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                outcomes, attempts = [], []
                ctx.on_outcome.append(outcomes.append)
                ctx.router.on_attempt = attempts.append
                await ask(ctx, "o1")
                await ask(ctx, "o2")
                await ask(ctx, "o1")  # a re-send after the answer: replayed
                return outcomes, attempts
        outcomes, attempts = run(go())
    ok, bad, again = outcomes
    assert (ok.ok, ok.tier, ok.calls, ok.reason, ok.error) == (True, "local", 1, None, None)
    assert ok.spend[0].tier.name == "local" and ok.tokens > 0 and 0 < ok.first_output_s <= ok.total_s
    assert bad.reason is Reason.INVALID_CALLS and "unknown tool 'unlock_door'" in bad.error and bad.calls == 0
    assert again.replayed and again.sent == ok.sent and not again.spend
    assert [r.verdict for r in attempts] == [Verdict.OK] * 4  # one turn, then a turn and two repair turns
    assert all(r.tier == "local" and r.first_output_ms > 0 for r in attempts)


def _after_results(*results):
    """A device's second round: its ask, the model's calls and the results the device sends back."""
    calls = [{"cid": f"c{i}", "tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}}
             for i in range(len(results))]
    return [{"r": "user", "t": "it is getting dark"}, {"r": "asst", "t": "", "calls": calls},
            *({"r": "tool", "cid": f"c{i}", "t": r} for i, r in enumerate(results))]


def test_a_model_that_ends_with_no_words_after_acting_answers_with_the_results(tmp_path):
    # what llama-server's small models often do: the light went on, and the ask must not read as failed
    with fake_tiers(lambda req: Reply(text="")) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                done = await ask(ctx, "w1", msgs=_after_results("ok: porch_light=1"), round=1)
                failed = await ask(ctx, "w2", msgs=_after_results("ok: porch_light=1", "Error: pin is busy"),
                                   round=1)
                nothing = await ask(ctx, "w3")  # a first round: no results to speak for it
                return done, failed, nothing
        done, failed, nothing = run(go())
    assert done[-1]["text"] == "Done: porch_light=1." and "err" not in done[-1]
    assert failed[-1]["text"] == "ok: porch_light=1; Error: pin is busy"
    assert "answered with nothing" in nothing[-1]["err"]


@pytest.mark.parametrize("finish, said", [("length", "cut off: the model reached its output limit"),
                                          ("content_filter", "stopped by the provider's content filter")])
def test_an_answer_the_model_stopped_in_its_middle_says_so(tmp_path, finish, said):
    """A turn ended by the output limit or a content filter: the words are not the whole answer, and the user
    reads that, not a cut sentence as if it were all; with no words at all, the error says why."""
    msgs, _ = one_ask(tmp_path, Reply(text="The porch light is", finish=finish), "v10")
    assert msgs[-1]["text"] == f"The porch light is [{said}]" and "err" not in msgs[-1], msgs
    msgs, _ = one_ask(tmp_path, Reply(text="", finish=finish), "v11")
    assert msgs[-1]["err"] == f"tier 'local' answered with nothing: {said}", msgs


def test_an_answer_that_ends_as_usual_carries_no_note(tmp_path):
    msgs, _ = one_ask(tmp_path, Reply(text="The porch light is on."), "v12")
    assert msgs[-1]["text"] == "The porch light is on.", msgs
