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


def _published(device_id, tools):
    return json.dumps({**manifest(device_id), "tools": tools}).encode()


def test_devices_publishing_the_same_tools_share_one_copy_and_catalog():
    from bridge.manifests import ManifestCache
    cache = ManifestCache()
    base = manifest("x")["tools"]
    for dev in ("a", "b"):
        assert cache.update(dev, _published(dev, base + ROUTINE_TOOLS))
    assert cache.update("c", _published("c", base))  # fewer tools: its own copy
    a, b, c = (cache.get(d) for d in "abc")
    assert a["tools"] is b["tools"] and a["tools"] is not c["tools"]
    assert cache.catalog("a") is cache.catalog("b") is not cache.catalog("c")
    assert cache.catalog("a").families == ["routines", "schedule"] and cache.catalog("c").families == []
    # the device's own ids and pins stay its own
    assert (a["id"], b["id"]) == ("a", "b")
    # a device that changes its tools gets its own again; one that clears its manifest is gone
    assert cache.update("b", _published("b", base))
    assert cache.get("b")["tools"] is c["tools"] and cache.catalog("b") is cache.catalog("c")
    assert cache.update("a", b"") is False
    assert cache.catalog("a") is None and cache.get("a") is None
    assert len(cache._shared) == 1  # the list nobody publishes any more is not kept


def test_a_device_cannot_borrow_another_devices_tools_by_claiming_its_hash():
    from bridge.manifests import ManifestCache
    cache = ManifestCache()
    cache.update("a", _published("a", manifest("a")["tools"] + ROUTINE_TOOLS))
    cache.update("b", _published("b", manifest("b")["tools"]))  # the same manifest "hash" field, other tools
    assert cache.get("a")["hash"] == cache.get("b")["hash"]
    assert [t["name"] for t in cache.get("b")["tools"]] == ["gpio_write"]
    assert cache.catalog("b").by_name.keys() == {"gpio_write"}


def test_an_offer_is_translated_once_per_provider_family_and_never_changed():
    from bridge.providers.schemas import translate
    from bridge.rounds.toolset import Catalog, Toolset
    tools = manifest("x")["tools"] + ROUTINE_TOOLS
    catalog = Catalog(tools)
    first = Toolset(manifest("x"), [], catalog)
    again = Toolset(manifest("x"), [], catalog)
    assert first.tools() is again.tools()  # the same offer, built once
    assert translate("openai", first.tools()) is translate("openai", again.tools())
    assert translate("gemini", first.tools()) is not translate("openai", first.tools())
    # the same result as translating a plain list, and as a round without a catalog offers
    plain = Toolset({"tools": tools}, [])
    for family in ("openai", "gemini", "anthropic", "ollama"):
        assert translate(family, first.tools()) == translate(family, list(plain.tools()))
    first.load(json.dumps({"family": "routines"}))
    assert [t["function"]["name"] for t in first.tools()] == ["gpio_write", MORE, "routine_list"]
    assert [t["function"]["name"] for t in again.tools()] == ["gpio_write", MORE]  # its own loaded families
