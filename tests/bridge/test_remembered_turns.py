"""Earlier turns a device remembers carry what was done, as the calls and results they were (the firmware's
agent.py _context): the bridge sends them to each provider family as its own tool calls and results, so a
follow-up ("and turn it off again") has the pin to act on."""
import json

import pytest

from bridge.config import Tier
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, run
from tests.fakes.openai_server import Reply

REMEMBERED = [{"r": "user", "t": "light the porch for the guests"},
              {"r": "asst", "t": "", "calls": [{"cid": "h1", "tool": "gpio_write",
                                                "args": {"pin": "porch_light", "value": 1}}]},
              {"r": "tool", "cid": "h1", "t": "ok: porch_light=1"},
              {"r": "asst", "t": "Porch light on."}]
FOLLOW_UP = {"r": "user", "t": "and turn it off again"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_what_was_done_reaches_the_model_as_its_own_calls_and_results(tmp_path, provider):
    reply = Reply(text="Porch light off.", calls=[("gpio_write", {"pin": "porch_light", "value": 0})])
    with fake_tiers(lambda req: reply) as (a,):
        cfg = config([Tier("local", a.base_url, "m", provider=provider)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "r1", msgs=[*REMEMBERED, FOLLOW_UP])
        msgs = run(go())
    assert [c["args"] for m in msgs for c in m.get("calls", [])] == [{"pin": "porch_light", "value": 0}]
    sent = a.requests[0]["messages"]
    if provider == "openai":
        call = sent[2]["tool_calls"][0]
        assert sent[2]["role"] == "assistant" and call["id"] == "h1" and call["function"]["name"] == "gpio_write"
        assert json.loads(call["function"]["arguments"]) == {"pin": "porch_light", "value": 1}
        assert sent[3] == {"role": "tool", "tool_call_id": "h1", "content": "ok: porch_light=1"}
        assert sent[4:] == [{"role": "assistant", "content": "Porch light on."},
                            {"role": "user", "content": "and turn it off again"}]
    else:  # Anthropic: tool_use in the assistant turn, its tool_result in the next user turn, roles alternate
        assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
        assert sent[1]["content"] == [{"type": "tool_use", "id": "h1", "name": "gpio_write",
                                       "input": {"pin": "porch_light", "value": 1}}]
        assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "h1", "content": "ok: porch_light=1"}]
