"""The bridge's OpenAI-compatible /v1 endpoint, driven by the official `openai` Python client and raw HTTP."""
import asyncio
import json
import urllib.error
import urllib.request

import openai
import pytest
from aiohttp import test_utils

from bridge.config import BridgeConfig, CostConfig, HttpConfig, Tier
from bridge.cost import CostStore
from bridge.httpclient import HttpClient
from bridge.providers import provider_factory
from bridge.routing.router import Router
from bridge.web import v1
from bridge.web.server import make_app
from tests.bridge.harness import BridgeThread, config, fake_tiers
from tests.fakes.openai_server import FakeOpenAI, Reply
from tools.broker import start_mosquitto

TOKEN = "wisp-test-token"
TOOLS = [{"type": "function", "function": {"name": "gpio_write", "description": "Set a pin",
                                           "parameters": {"type": "object", "properties": {
                                               "pin": {"type": "string"}, "value": {"type": "integer"}}}}}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    broker = start_mosquitto(tmp / "mosq")
    premium, local = FakeOpenAI(), FakeOpenAI()
    try:  # a failed start must not leave the broker running
        premium.start_in_thread()
        local.start_in_thread()
        cfg = BridgeConfig(broker_host=broker.host, broker_port=broker.port,
                           tiers={"premium": Tier("premium", premium.base_url, "p"),
                                  "local": Tier("local", local.base_url, "l", provider="anthropic")},
                           http=HttpConfig(port=0, token=TOKEN), cost=CostConfig(db=str(tmp / "cost.db")))
        cfg.routes["interactive"] = ["premium", "local"]
        b = BridgeThread(cfg).start()
        yield b.bridge, premium, local
        b.stop()
    finally:
        premium.stop()
        local.stop()
        broker.stop()


def client(bridge, token=TOKEN):
    return openai.OpenAI(base_url=bridge.http_url, api_key=token, max_retries=0, timeout=10)


def test_models_lists_classes_and_tiers(stack):
    bridge, _, _ = stack
    assert [m.id for m in client(bridge).models.list()] == ["interactive", "scheduled", "private", "premium", "local"]


def test_models_retrieve_and_unsupported_parameters_are_clear(stack):
    bridge, _, _ = stack
    assert client(bridge).models.retrieve("premium").id == "premium"
    with pytest.raises(openai.NotFoundError):
        client(bridge).models.retrieve("gpt-9")
    with pytest.raises(openai.BadRequestError) as info:
        client(bridge).chat.completions.create(model="premium", n=2, messages=[{"role": "user", "content": "x"}])
    assert "'n' must be 1" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client(bridge).chat.completions.create(model="premium", logprobs=True,
                                               messages=[{"role": "user", "content": "x"}])
    assert "not supported by this bridge: logprobs" in info.value.message


def test_sampling_options_reach_the_tier_in_its_own_terms(stack):
    bridge, premium, local = stack
    premium.responder = lambda req: Reply(text="openai side")
    local.responder = lambda req: Reply(text="anthropic side")
    options = {"temperature": 0.2, "max_tokens": 50, "stop": ["END"], "tool_choice": "required",
               "response_format": {"type": "json_object"}}
    client(bridge).chat.completions.create(model="premium", tools=TOOLS, messages=[{"role": "user", "content": "x"}],
                                           **options)
    sent = premium.requests[-1]
    assert {k: sent[k] for k in options} == options          # as the caller sent them
    without_format = {k: v for k, v in options.items() if k != "response_format"}
    client(bridge).chat.completions.create(model="local", tools=TOOLS, messages=[{"role": "user", "content": "x"}],
                                           **without_format)
    sent = local.requests[-1]                                  # the Messages API's names
    assert (sent["temperature"], sent["max_tokens"], sent["stop_sequences"], sent["tool_choice"]) == (
        0.2, 50, ["END"], {"type": "any"})
    with pytest.raises(openai.APIStatusError) as info:         # refused, not silently dropped
        client(bridge).chat.completions.create(model="local", messages=[{"role": "user", "content": "x"}],
                                               response_format={"type": "json_object"})
    assert "'response_format' is not supported by the Anthropic messages API" in info.value.message


def test_non_streamed_completion_with_tools(stack):
    bridge, premium, _ = stack
    premium.responder = lambda req: Reply(calls=[("gpio_write", {"pin": "porch", "value": 1})])
    r = client(bridge).chat.completions.create(model="interactive", tools=TOOLS,
                                               messages=[{"role": "user", "content": "porch on"}])
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "gpio_write" and json.loads(call.function.arguments) == {"pin": "porch", "value": 1}
    assert r.choices[0].finish_reason == "tool_calls" and r.usage.prompt_tokens > 0
    assert premium.requests[-1]["tools"] == TOOLS  # passed through


def test_streamed_completion_fails_over_before_output(stack):
    bridge, premium, local = stack
    premium.responder = lambda req: Reply(status=500)
    local.responder = lambda req: Reply(text="Hello from the local tier.")
    chunks = list(client(bridge).chat.completions.create(
        model="interactive", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the local tier."  # through the Anthropic provider, back in OpenAI chunks
    assert chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def _raw_stream(bridge, body: dict) -> list[tuple[float, bytes]]:
    """(seconds since the request, line) for each line of a streamed answer, read off the socket."""
    import http.client
    import time
    from urllib.parse import urlsplit
    url = urlsplit(bridge.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    t0 = time.monotonic()
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    lines = [(time.monotonic() - t0, line) for line in iter(resp.readline, b"")]
    conn.close()
    return lines


def test_a_slow_first_token_gets_keep_alive_comments(stack, monkeypatch):
    """A proxy cuts a response that sends nothing for its read timeout (nginx: 60 s): while the tier is
    silent, the stream carries SSE comments, which clients ignore."""
    monkeypatch.setattr(v1, "KEEPALIVE_S", 0.2)
    bridge, premium, _ = stack
    premium.responder = lambda req: Reply(text="Worth the wait.", ttft_ms=1000)
    lines = _raw_stream(bridge, {"model": "premium", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    comments = [t for t, line in lines if line.startswith(b":")]
    first_text = next(t for t, line in lines if b'"content": "Worth' in line)
    assert len(comments) >= 3 and comments[0] < 0.6 < first_text  # long before the first token
    chunks = list(client(bridge).chat.completions.create(model="premium", stream=True,
                                                         messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Worth the wait."


def test_a_tier_failing_after_keep_alive_is_still_replaced(stack, monkeypatch):
    """Comments are no output: a tier that fails after them but before its first token is replaced, and
    the client sees only the answer of the tier that finished."""
    monkeypatch.setattr(v1, "KEEPALIVE_S", 0.1)
    bridge, premium, local = stack
    premium.responder = lambda req: Reply(text="never sent", ttft_ms=600, cut_after_chunks=0)
    local.responder = lambda req: Reply(text="From the second tier.")
    lines = _raw_stream(bridge, {"model": "interactive", "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]})
    body = b"".join(line for _t, line in lines)
    assert b"never" not in body and 0 <= body.find(b": waiting") < body.find(b"\"content\": \"From")
    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for _t, line in lines if line.startswith(b"data: {") and b'"choices": [{' in line)
    assert text == "From the second tier."


def test_a_failure_after_keep_alive_is_reported_in_the_stream(stack, monkeypatch):
    """Once headers are out the status cannot change: the error comes as OpenAI's in-band error object,
    which the official client raises."""
    monkeypatch.setattr(v1, "KEEPALIVE_S", 0.1)
    bridge, premium, _ = stack
    premium.responder = lambda req: Reply(text="never sent", ttft_ms=500, cut_after_chunks=0)
    with pytest.raises(openai.APIError) as info:
        list(client(bridge).chat.completions.create(model="premium", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]))
    assert "premium" in info.value.message


def test_tier_as_model_and_errors_are_openai_shaped(stack):
    bridge, premium, _ = stack
    premium.responder = lambda req: Reply(status=500)
    with pytest.raises(openai.APIStatusError) as info:
        client(bridge).chat.completions.create(model="premium", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and "tier 'premium' failed: HTTP 500" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client(bridge).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        client(bridge, token="wrong").models.list()


def test_bad_json_and_missing_token_over_raw_http(stack):
    bridge, _, _ = stack

    def post(body: bytes, headers):
        req = urllib.request.Request(bridge.http_url + "/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = post(b"{not json", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = post(b'{"model": "interactive", "messages": "hi"}', {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and "'messages' must be a non-empty list" in body["error"]["message"]
    status, body = post(b"[" * 100_000, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and "nested too deeply" in body["error"]["message"]
    status, body = post(b"{}", {})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_http_status_follows_the_failure_reason(tmp_path, monkeypatch):
    """504 when the deadline passes, 503 when no tier may take the request now; never picked from the text."""
    monkeypatch.setattr(v1, "HTTP_DEADLINE_S", 0.3)
    body = {"model": "interactive", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with fake_tiers(lambda req: Reply(text="late", ttft_ms=2000)) as (slow,):
        cfg = config([Tier("premium", slow.base_url, "p")], tmp_path)

        async def go():
            costs = CostStore(cfg.cost)
            try:
                async with HttpClient() as http:
                    router = Router(cfg, provider_factory(http))
                    app = make_app(token=TOKEN, router=router, costs=costs, fleet=None, hub=None, metrics=None)
                    async with test_utils.TestClient(test_utils.TestServer(app)) as http:
                        late = await http.post("/v1/chat/completions", json=body, headers=auth)
                        router.in_flight["premium"] = cfg.tiers["premium"].max_concurrency  # the tier is full
                        full = await http.post("/v1/chat/completions", json=body, headers=auth)
                        return late.status, await late.json(), full.status, await full.json()
            finally:
                costs.close()
        late, late_body, full, full_body = asyncio.run(go())
    assert late == 504 and "did not finish within the budget" in late_body["error"]["message"]
    assert full == 503 and "at its limit of" in full_body["error"]["message"]
