"""Recorded real-server streams (tests/fakes/recorded.py) through the bridge: the quirks public issues report
must give the device the right calls, reply, usage and errors."""
import json
import sqlite3

from bridge.config import Tier
from bridge.httpclient import HttpClient
from bridge.providers import provider_factory
from tests.bridge.harness import ask, bridge_ctx, config, manifest, run
from tests.fakes import recorded
from tests.fakes.recorded import Replay


def two_pin_manifest(device_id="dev1"):
    m = manifest(device_id)
    m["tools"] = json.loads(json.dumps(m["tools"]))
    m["tools"][0]["params"]["properties"]["pin"]["enum"] = ["fan", "porch_light"]
    m["pins"] = {"porch_light": {"mode": "out"}, "fan": {"mode": "out"}}
    return m


def replay_round(tmp_path, recording, **tier):
    async def go():
        server = Replay(recording)
        await server.start()
        try:
            cfg = config([Tier("local", server.base_url, "m", **tier)], tmp_path)
            async with bridge_ctx(cfg) as ctx:
                ctx.manifests.update("dev1", json.dumps(two_pin_manifest()).encode())
                msgs = await ask(ctx, "r1")
                ctx.costs.flush()
            return msgs, server.requests
        finally:
            await server.close()
    return run(go())


def test_ollama_parallel_calls_at_index_0_ending_with_stop_are_two_calls_and_one_reply(tmp_path):
    msgs, requests = replay_round(tmp_path, recorded.OLLAMA_PARALLEL)
    calls = [c for m in msgs for c in m.get("calls", [])]
    assert [(c["cid"], c["args"]) for c in calls] == [("call_x1q2", {"pin": "porch_light", "value": 1}),
                                                      ("call_k9z3", {"pin": "fan", "value": 1})]
    assert msgs[-1]["done"] and msgs[-1]["text"] == "Porch light and fan are on."
    assert len(requests) == 1


def test_llama_server_without_jinja_is_a_config_error_that_says_the_fix(tmp_path):
    msgs, requests = replay_round(tmp_path, recorded.LLAMA_NO_JINJA)
    err = msgs[-1]["err"]
    assert "tier 'local' refused the request" in err and "tools param requires --jinja flag" in err
    assert "start llama-server with --jinja" in err
    assert len(requests) == 1  # not retried: the same request would get the same answer


def test_usage_only_in_the_trailer_reaches_the_device(tmp_path):
    msgs, _ = replay_round(tmp_path, recorded.USAGE_TRAILER_ONLY)
    assert msgs[-1]["usage"] == {"in": 655, "out": 19} and msgs[-1]["text"] == "Porch light on."
    assert [c["args"] for m in msgs for c in m.get("calls", [])] == [{"pin": "porch_light", "value": 1}]


def test_a_server_that_never_sends_usage_is_estimated_with_its_tools(tmp_path):
    msgs, requests = replay_round(tmp_path, recorded.USAGE_NEVER)
    assert msgs[-1]["text"] == "The door is closed." and "usage" not in msgs[-1]  # an estimate is not told
    with sqlite3.connect(tmp_path / "cost.db") as db:
        tokens_in, estimated = db.execute("SELECT tokens_in, estimated FROM usage").fetchone()
    tools_chars = len(json.dumps(requests[0]["tools"], separators=(",", ":")))
    assert estimated == 1 and tokens_in >= tools_chars // 4  # the tools are counted, not just the messages


def test_anthropic_input_json_delta_fragments_make_one_call_and_cache_reads_count_as_input():
    async def go():
        server = Replay(recorded.ANTHROPIC_TOOL_USE)
        await server.start()
        try:
            async with HttpClient() as http:
                tier = Tier("claude", server.base_url, "claude-sonnet-4-5", "sk-ant-x", provider="anthropic")
                provider = provider_factory(http)(tier)
                tools = [{"type": "function", "function": {"name": "gpio_write", "description": "d",
                                                           "parameters": {"type": "object", "properties": {}}}}]
                return [ev async for ev in provider.stream_chat([{"role": "user", "content": "porch"}], tools)]
        finally:
            await server.close()
    events = run(go())
    assert [e.kind for e in events] == ["text", "call", "done"]
    assert events[1].call.name == "gpio_write" and events[1].call.args == {"pin": "porch_light", "value": 1}
    assert events[1].call.cid == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert events[2].finish_reason == "tool_calls"
    assert events[2].usage == {"prompt_tokens": 472 + 380, "completion_tokens": 41}
