"""Tools offered by family: the everyday ones always, the rest when the model asks for them with more_tools,
answered by the bridge itself within the round; a family used earlier in the conversation stays offered."""
import json

from bridge.config import Tier
from bridge.rounds.toolset import MORE
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, manifest, run
from tests.fakes.openai_server import Reply

ROUTINE_TOOLS = [{"name": "routine_list", "desc": "List saved routines.", "params": {"type": "object",
                                                                                    "properties": {}}},
                 {"name": "schedule_list", "desc": "List scheduled jobs.",
                  "params": {"type": "object", "properties": {}}}]


def offered(request):
    return [t["function"]["name"] for t in request.get("tools") or []]


def test_a_family_is_offered_once_the_model_asks_for_it(tmp_path):
    script = iter([Reply(calls=[(MORE, {"family": "routines"})]), Reply(calls=[("routine_list", {})])])
    with fake_tiers(lambda req: next(script)) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                m = manifest("dev1")
                ctx.manifests.update("dev1", json.dumps({**m, "tools": m["tools"] + ROUTINE_TOOLS}).encode())
                return await ask(ctx, "t1")
        msgs = run(go())
    first, second = a.requests
    assert offered(first) == ["gpio_write", MORE]                 # routines and schedules are not sent
    assert first["tools"][1]["function"]["parameters"]["properties"]["family"]["enum"] == ["routines", "schedule"]
    assert "routines (offline routines)" in first["messages"][0]["content"]
    assert offered(second) == ["gpio_write", MORE, "routine_list"]  # prefix unchanged: caches still match
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": second["messages"][-2]["tool_calls"][0]["id"],
                                      "content": "ok: now offered: routine_list"}
    assert [c["tool"] for m in msgs for c in m.get("calls", [])] == ["routine_list"]  # more_tools stays here
    assert msgs[-1]["done"] and "err" not in msgs[-1]


def test_a_family_used_earlier_in_the_conversation_stays_offered(tmp_path):
    with fake_tiers(lambda req: Reply(text="2 routines.")) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)
        history = [{"r": "user", "t": "list my routines"},
                   {"r": "asst", "t": "", "calls": [{"cid": "c1", "tool": "routine_list", "args": {}}]},
                   {"r": "tool", "cid": "c1", "t": "2 routines: a, b"}]

        async def go():
            async with bridge_ctx(cfg) as ctx:
                m = manifest("dev1")
                ctx.manifests.update("dev1", json.dumps({**m, "tools": m["tools"] + ROUTINE_TOOLS}).encode())
                return await ask(ctx, "t2", round=1, msgs=history)
        msgs = run(go())
    assert offered(a.requests[0]) == ["gpio_write", MORE, "routine_list"]
    assert msgs[-1]["text"] == "2 routines."


def test_asking_for_a_family_the_device_lacks_is_corrected_like_an_invalid_call(tmp_path):
    script = iter([Reply(calls=[(MORE, {"family": "i2c"})]), Reply(text="No I2C bus here.")])
    with fake_tiers(lambda req: next(script)) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                m = manifest("dev1")
                ctx.manifests.update("dev1", json.dumps({**m, "tools": m["tools"] + ROUTINE_TOOLS}).encode())
                return await ask(ctx, "t3")
        msgs = run(go())
    assert a.requests[1]["messages"][-1]["content"] == "Error: family must be one of routines, schedule"
    assert msgs[-1]["text"] == "No I2C bus here."


def test_a_silent_turn_after_an_action_and_a_family_request_ends_the_round_not_in_error(tmp_path):
    # the action was sent; the device then gets its result back to the model in the next round
    script = iter([Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1}), (MORE, {"family": "routines"})]),
                   Reply()])
    with fake_tiers(lambda req: next(script)) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                m = manifest("dev1")
                ctx.manifests.update("dev1", json.dumps({**m, "tools": m["tools"] + ROUTINE_TOOLS}).encode())
                return await ask(ctx, "t4")
        msgs = run(go())
    assert [c["tool"] for m in msgs for c in m.get("calls", [])] == ["gpio_write"]
    assert msgs[-1]["done"] and "err" not in msgs[-1] and msgs[-1]["text"] == ""
