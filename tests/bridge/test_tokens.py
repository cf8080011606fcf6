"""The bridge's token estimate (used when a tier reports no usage) against what a real-format fake reports for
the same request, tools included, on the default device's first round and a /v1-style request with no tools."""
import json

import pytest

from bridge.config import Tier
from bridge.providers.tokens import estimate_tokens
from bridge.rounds.prompt import system_prompt
from bridge.rounds.toolset import Toolset
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, run
from tests.bridge.test_provider_rules import manifest_of
from tests.fakes.openai_server import Reply, count_tokens


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_estimate_is_within_a_quarter_of_reported_usage_on_a_device_round(tmp_path, provider):
    default = manifest_of(tmp_path, "default")
    with fake_tiers(lambda req: Reply(text="Porch light on.", calls=[("gpio_write", {"pin": "porch_light",
                                                                                     "value": 1})])) as (a,):
        cfg = config([Tier("local", a.base_url, "m", provider=provider)], tmp_path)

        async def go():
            async with bridge_ctx(cfg, device_id="conf1") as ctx:
                ctx.manifests.update("conf1", json.dumps(default).encode())
                return await ask(ctx, "k1", device_id="conf1")
        msgs = run(go())
    reported = msgs[-1]["usage"]["in"]
    req = a.requests[0]
    # what the bridge would have estimated for this round: its chat and tools, before the wire format
    toolset = Toolset(default, [])
    chat = [{"role": "system", "content": system_prompt(default, [], toolset.hint())},
            {"role": "user", "content": "turn on the porch light"}]
    estimate = estimate_tokens(chat, toolset.tools())
    assert 0.8 <= estimate / reported <= 1.25, (estimate, reported)
    assert estimate_tokens(chat) < reported / 2  # what the old estimate missed: the tools are most of it
    assert len(req["tools"]) == len(toolset.tools())


def test_estimate_of_plain_chat_is_close_too():
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word, please."}]
    ratio = estimate_tokens(messages) / count_tokens([messages, []])
    assert 0.7 <= ratio <= 1.4, ratio
