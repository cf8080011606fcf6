"""What the providers receive, and what the device is told when one says no, checked against the providers'
documented rules. Our fake tiers accept anything, so the rules are written down here with their sources:
the output-token limit, a repair turn's echo of invalid tool calls, whitespace text on Anthropic, a
reasoning model's thinking, and the advice a refusal (or an account out of quota) carries."""
import asyncio
import contextlib
import json
import re
import time

import pytest
from aiohttp import web

from bridge.config import Tier
from bridge.httpclient import HttpError
from bridge.providers import provider_factory
from bridge.providers.base import ProviderError
from bridge.rounds.round import Call, follow_up
from tests.bridge.harness import PORCH_ON, ask, bridge_ctx, config, fake_tiers, run
from tests.fakes.openai_server import Reply

OPENAI, CEREBRAS = "https://api.openai.com/v1", "https://api.cerebras.ai/v1"
LLAMA_SERVER, OLLAMA = "http://127.0.0.1:8080/v1", "http://127.0.0.1:11434/v1"
ANTHROPIC = "https://api.anthropic.com/v1"
CHAT = [{"role": "system", "content": "You control a device."}, {"role": "user", "content": "porch light on"}]
LIMITS = {"max_tokens", "max_completion_tokens"}

# ---- the rules -----------------------------------------------------------------------------------------------
# OpenAI chat completions: a function name matches ^[a-zA-Z0-9_-]{1,64}$ (function calling guide); a
# tool_calls[].id over 40 characters is a 400 "string_above_max_length"; each tool message answers a call of
# an earlier assistant turn. llama-server's chat templates parse `arguments` into a JSON object.
_OPENAI_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Anthropic messages: tool_use name and id match ^[a-zA-Z0-9_-]+$; "text content blocks must contain
# non-whitespace text"; a message's content may not be empty; a tool_result answers a tool_use of the turn
# before it.
_ANTHROPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")


def openai_breaks(body: dict) -> list[str]:
    out = ["both max_tokens and max_completion_tokens"] if LIMITS <= set(body) else []
    ids: set[str] = set()
    for i, m in enumerate(body["messages"]):
        for c in m.get("tool_calls") or []:
            name, cid, raw = c["function"]["name"], c["id"], c["function"]["arguments"]
            if not _OPENAI_NAME.fullmatch(name):
                out.append(f"messages[{i}]: function name {name!r}")
            if not cid or len(cid) > 40:
                out.append(f"messages[{i}]: tool call id {cid!r}")
            if not isinstance(json.loads(raw), dict):
                out.append(f"messages[{i}]: arguments {raw!r} are not a JSON object")
            ids.add(cid)
        if m["role"] == "tool" and m["tool_call_id"] not in ids:
            out.append(f"messages[{i}]: result for unknown call {m['tool_call_id']!r}")
    return out


def anthropic_breaks(body: dict) -> list[str]:
    out = [f"system {s['text']!r}" for s in body.get("system") or [] if not s["text"].strip()]
    uses: set[str] = set()
    for i, m in enumerate(body["messages"]):
        if not m["content"]:
            out.append(f"messages[{i}]: empty content")
        for b in m["content"]:
            if b["type"] == "text" and not b["text"].strip():
                out.append(f"messages[{i}]: whitespace-only text block {b['text']!r}")
            if b["type"] == "tool_use" and not (_ANTHROPIC_ID.fullmatch(b["id"] or "")
                                                and _ANTHROPIC_ID.fullmatch(b["name"] or "")):
                out.append(f"messages[{i}]: tool_use id {b['id']!r} name {b['name']!r}")
            if b["type"] == "tool_result" and b["tool_use_id"] not in uses:
                out.append(f"messages[{i}]: result for unknown tool_use {b['tool_use_id']!r}")
        uses = {b["id"] for b in m["content"] if b["type"] == "tool_use"}
    return out


class Capture:
    """Stands in for the HttpClient: keeps the body the real provider code built, then fails the attempt."""

    def __init__(self):
        self.bodies: list[dict] = []

    async def post(self, url, body, headers, connect_timeout_s, deadline=None):
        self.bodies.append(json.loads(body))
        raise HttpError("captured, not sent")


def sent(tier: Tier, messages=CHAT, tools=None, options=None) -> dict:
    """The request body the tier's provider sends for this chat."""
    async def go():
        http = Capture()
        with pytest.raises(ProviderError):
            async for _ in provider_factory(http)(tier).stream_chat(messages, tools, options):
                pass
        return http.bodies[-1]
    return asyncio.run(go())


def capped(url: str, **kw) -> Tier:
    return Tier("t", url, "m", "key", max_tokens=512, max_tokens_set=True, **kw)


# ---- the output-token limit ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url, field", [(OPENAI, "max_completion_tokens"),   # o-series, gpt-5 refuse max_tokens
                                        (CEREBRAS, "max_completion_tokens"),  # the name its chat API documents
                                        (LLAMA_SERVER, "max_tokens"),         # the name every version reads
                                        (OLLAMA, "max_tokens")])              # the only one /v1 lists
def test_the_tiers_limit_goes_under_the_one_name_its_server_takes(url, field):
    body = sent(capped(url))
    assert body[field] == 512 and LIMITS & set(body) == {field}


@pytest.mark.parametrize("url", [OPENAI, LLAMA_SERVER])
@pytest.mark.parametrize("options, want", [({"max_completion_tokens": 100}, 100), ({"max_tokens": 100}, 100),
                                           ({"max_completion_tokens": 4000}, 512),  # the tier's is a ceiling
                                           ({"max_tokens": 4000, "max_completion_tokens": 100}, 100)])
def test_a_v1_callers_limit_is_honoured_below_the_tiers(url, options, want):
    body = sent(capped(url), options=options)
    (field,) = LIMITS & set(body)  # one name only: OpenAI refuses max_tokens, older servers ignore the other
    assert body[field] == want


def test_without_a_tier_limit_the_callers_goes_under_the_servers_name():
    body = sent(Tier("commodity", OPENAI, "gpt-5-mini", "key"), options={"max_tokens": 300})
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert not LIMITS & set(sent(Tier("commodity", OPENAI, "gpt-5-mini", "key")))  # nobody set one: none sent


def test_anthropic_gets_its_required_limit_the_same_way():
    plain = Tier("claude", ANTHROPIC, "claude-haiku-4-5", "key", provider="anthropic")
    assert sent(plain)["max_tokens"] == 1024                                     # required: the default
    assert sent(plain, options={"max_completion_tokens": 4000})["max_tokens"] == 4000  # no ceiling set
    assert sent(capped(ANTHROPIC, provider="anthropic"), options={"max_tokens": 4000})["max_tokens"] == 512
    assert sent(capped(ANTHROPIC, provider="anthropic"), options={"max_tokens": 100})["max_tokens"] == 100


# ---- OpenAI's developer role ---------------------------------------------------------------------------------
# OpenAI's chat API takes `developer` messages, its newer name for the instructions (what its SDK's agents and
# many coding tools send for reasoning models); Cerebras's chat API lists the role too. llama-server's and
# vLLM's chat templates refuse a role they do not know ("Unexpected message role": vllm-project/vllm issue
# 42407; llama.cpp answered 500 before its pull 20215) or skip it, as Ollama's model templates do.

@pytest.mark.parametrize("url, role", [(OPENAI, "developer"), (CEREBRAS, "developer"),
                                       (LLAMA_SERVER, "system"), (OLLAMA, "system")])
def test_a_developer_message_reaches_a_server_that_does_not_know_the_role_as_system(url, role):
    chat = [{"role": "developer", "content": "Answer in French."}, CHAT[1]]
    body = sent(Tier("t", url, "m", "key"), chat)
    assert body["messages"] == [{"role": role, "content": "Answer in French."}, CHAT[1]]
    assert chat[0]["role"] == "developer"  # the caller's messages are not changed


# ---- a repair turn echoes invalid calls in a form the provider takes -----------------------------------------

ODD_CALLS = [Call("functions.gpio_write:0", "functions.gpio_write", '{"pin": "porch_light"}',
                  "Error: unknown tool 'functions.gpio_write'; tools: gpio_write"),
             Call("", "", "", "Error: unknown tool ''; tools: gpio_write"),
             Call("x" * 50, "y" * 80, "[1, 2]", "Error: unknown tool 'yyy...'"),
             Call("a.b", "gpio_write", '{"pin": "porch_light", "value": 1}', None),
             Call("a:b", "gpio_write", '{"pin": "porch_light", "value": 1', "Error: gpio_write: not valid JSON")]


@pytest.mark.parametrize("provider, breaks", [("openai", openai_breaks), ("anthropic", anthropic_breaks)])
def test_a_repair_turn_with_odd_names_and_ids_passes_the_providers_rules(provider, breaks):
    body = sent(Tier("t", ANTHROPIC if provider == "anthropic" else OPENAI, "m", "key", provider=provider),
                CHAT + follow_up(ODD_CALLS, "\n\n"))
    assert breaks(body) == []
    repair = follow_up(ODD_CALLS, "")
    ids = [c["id"] for c in repair[0]["tool_calls"]]
    assert [m["tool_call_id"] for m in repair[1:]] == ids and len(set(ids)) == len(ids)  # one result per call
    assert [c["function"]["name"] for c in repair[0]["tool_calls"]][:3] == [
        "functions_gpio_write", "invalid_tool", "y" * 64]
    assert "unknown tool 'functions.gpio_write'" in repair[1]["content"]  # the model learns what it wrote


@pytest.mark.parametrize("provider, breaks", [("openai", openai_breaks), ("anthropic", anthropic_breaks)])
@pytest.mark.parametrize("name, args", [("functions.gpio_write", PORCH_ON[1]), ("", {}), ("g" * 70, {}),
                                        ("gpio_write", [1, 2])])
def test_a_round_repairing_an_invalid_call_sends_what_the_provider_accepts(tmp_path, provider, breaks, name, args):
    # the model streams "\n\n" before its call, as Qwen on Ollama does; the repair turn must not be a 400
    script = iter([Reply(text="\n\n", calls=[(name, args)]), Reply(text="Sorry, fixed.")])
    with fake_tiers(lambda req: next(script)) as (a,):
        cfg = config([Tier("local", a.base_url, "m", provider=provider)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "r1")
        msgs = run(go())
    assert msgs[-1]["text"] == "Sorry, fixed." and len(a.requests) == 2
    repair = a.requests[1]
    assert breaks(repair) == []
    last = repair["messages"][-1]
    result = last["content"][-1]["content"] if provider == "anthropic" else last["content"]
    assert (f"unknown tool {name!r}" if name != "gpio_write" else "not a JSON object") in result


def test_whitespace_text_never_reaches_anthropic_and_no_turn_is_left_empty():
    chat = [{"role": "system", "content": " \n"}, *CHAT,
            {"role": "assistant", "content": "\n\n", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "gpio_write", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "Error: gpio_write: 'pin' required"},
            {"role": "user", "content": "  "},
            {"role": "assistant", "content": " \n "},
            {"role": "user", "content": "and now?"}]
    body = sent(Tier("claude", ANTHROPIC, "claude-haiku-4-5", "key", provider="anthropic"), chat)
    assert anthropic_breaks(body) == []
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use"]  # the call stays, its "\n\n" not
    assert body["messages"][2]["content"][-1] == {"type": "text", "text": "and now?"}
    assert body["system"][0]["text"] == "You control a device."


# ---- a provider saying no: what the device is told -----------------------------------------------------------

@contextlib.asynccontextmanager
async def provider_answering(status: int, body: dict):
    """An OpenAI-compatible server that answers every chat request with this status and JSON body."""
    asked: list[dict] = []

    async def chat(request):
        asked.append(await request.json())
        return web.json_response(body, status=status)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", asked
    finally:
        await runner.cleanup()


def openai_error(message: str, etype: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def device_error(tmp_path, status: int, body: dict) -> tuple[str, int, float]:
    """(the err the device gets, how often the tier was asked, seconds it took) with one tier answering so."""
    async def go():
        async with provider_answering(status, body) as (url, asked):
            async with bridge_ctx(config([Tier("premium", url, "m")], tmp_path)) as ctx:
                t0 = time.monotonic()
                msgs = await ask(ctx, "r1")
                return msgs[-1]["err"], len(asked), time.monotonic() - t0
    return run(go())


SCHEMA_400 = openai_error("Invalid schema for function 'routine_define': In context=('properties', 'steps'), "
                          "array schema missing items.", "invalid_request_error", "invalid_function_parameters",
                          "tools[0].function.parameters")


@pytest.mark.parametrize("status, body, says, never", [
    (400, SCHEMA_400, ["array schema missing items", "(param: tools[0].function.parameters)",
                       "refused this request as sent"], ["API key", "model name"]),
    (422, openai_error("Unprocessable message.", "invalid_request_error", None), ["refused this request as sent"],
     ["API key", "model name"]),
    (401, openai_error("Incorrect API key provided: sk-wr*ng.", "invalid_request_error", "invalid_api_key"),
     ["check its API key"], ["model name"]),
    (404, openai_error("The model `gpt-9` does not exist or you do not have access to it.",
                       "invalid_request_error", "model_not_found"), ["check its model name and URL"], ["API key"]),
])
def test_a_refusal_says_what_to_fix_by_its_status(tmp_path, status, body, says, never):
    err, asked, _ = device_error(tmp_path, status, body)
    assert err.startswith(f"tier 'premium' refused the request (HTTP {status}: ") and asked == 1
    for words in says:
        assert words in err, err
    for words in never:
        assert words not in err, err


QUOTA_429 = openai_error("You exceeded your current quota, please check your plan and billing details.",
                         "insufficient_quota", "insufficient_quota")


def test_an_account_out_of_quota_is_told_as_such_not_waited_out_as_a_rate_limit(tmp_path):
    err, asked, took = device_error(tmp_path, 429, QUOTA_429)
    assert asked == 1 and took < 1.0  # no Retry-After wait, no second try: credit does not come back by itself
    assert "out of quota" in err and "You exceeded your current quota" in err and "rate limited" not in err


# Cerebras answers an account without credit with 402 Payment Required (its "Error Codes" page; its SDK's
# PaymentRequired): like OpenAI's insufficient_quota, nothing but credit cures it
PAYMENT_402 = {"message": "Payment required: your organization has no credit left.", "type": "payment_required",
               "param": "", "code": "payment_required"}


def test_an_account_out_of_credit_with_402_is_told_as_such_and_not_asked_twice(tmp_path):
    err, asked, _ = device_error(tmp_path, 402, PAYMENT_402)
    assert err.startswith("tier 'premium' refused the request (HTTP 402: Payment required") and asked == 1
    assert "out of quota" in err and "API key" in err


def test_an_account_out_of_quota_fails_over_to_the_next_tier(tmp_path):
    async def go():
        async with provider_answering(429, QUOTA_429) as (url, asked):
            with fake_tiers(lambda req: Reply(text="From the other tier.")) as (b,):
                cfg = config([Tier("premium", url, "m"), Tier("commodity", b.base_url, "m")], tmp_path)
                async with bridge_ctx(cfg) as ctx:
                    msgs = await ask(ctx, "r1")
                    return msgs, len(asked), ctx.router.limited_for(cfg.tiers["premium"])
    msgs, asked, limited_s = run(go())
    assert msgs[-1]["text"] == "From the other tier." and msgs[-1]["tier"] == "commodity"
    assert asked == 1 and limited_s == 0  # not marked rate limited: not a "come back later"


# ---- a reasoning model's thinking is not output, for hedging either ------------------------------------------

def test_a_tier_still_thinking_is_hedged_and_its_thoughts_are_never_shown(tmp_path):
    # Decision: hedging counts the first text or tool call, not the first reasoning delta. A tier that only
    # thinks has given the device nothing yet, so the hedge starts, and the first tier with output wins.
    async def thinking(request):
        await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(20):  # 2 s of gpt-oss style reasoning deltas (Cerebras: delta.reasoning)
            chunk = {"choices": [{"index": 0, "delta": {"reasoning": "Let me think. "}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.1)
        return resp

    async def go():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", thinking)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            with fake_tiers(lambda req: Reply(text="Porch light on.")) as (b,):
                url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
                cfg = config([Tier("premium", url, "gpt-oss-120b", hedge_after_s=0.3),
                              Tier("commodity", b.base_url, "m")], tmp_path)
                async with bridge_ctx(cfg) as ctx:
                    t0 = time.monotonic()
                    msgs = await ask(ctx, "r1")
                    return msgs, time.monotonic() - t0
        finally:
            await runner.cleanup()
    msgs, took = run(go())
    assert msgs[-1]["text"] == "Porch light on." and msgs[-1]["tier"] == "commodity"
    assert "think" not in json.dumps(msgs) and took < 1.5


def test_a_call_id_outside_the_providers_pattern_reaches_the_device_in_it(tmp_path):
    # Kimi models served by vLLM name their calls "functions.gpio_write:0": forwarded as they are,
    # the device's next round would carry them to an OpenAI or Anthropic tier, which refuses them
    odd = ["functions.gpio_write:0", "functions.gpio_write.0"]
    with fake_tiers(lambda req: Reply(calls=[PORCH_ON, PORCH_ON], call_ids=odd)) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "i1")
        msgs = run(go())
    cids = [c["cid"] for m in msgs for c in m.get("calls", [])]
    assert cids[0] == "functions_gpio_write_0" and len(set(cids)) == 2, msgs  # each result names its call
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", c) for c in cids), cids
