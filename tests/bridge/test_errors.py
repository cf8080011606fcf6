"""Errors a user can act on: a 429 is waited out as its Retry-After says (or reported with it, as a 429 on /v1),
a spent /v1 budget says when it resets, and /v1 callers have breakers of their own, so their failures never cut
the devices off a tier."""
import asyncio
import http.server
import threading
import time

import pytest
from aiohttp import test_utils

from bridge.config import Tier
from bridge.cost import CostStore
from bridge.httpclient import HttpClient
from bridge.providers import provider_factory
from bridge.providers.base import ProviderError
from bridge.routing.hedge import refusal_advice
from bridge.routing.router import Router
from bridge.web.server import make_app
from tests.bridge.harness import PORCH_ON, ask, bridge_ctx, config, fake_tiers, run
from tests.fakes.openai_server import Reply

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"model": "interactive", "messages": [{"role": "user", "content": "hi"}]}


def scripted(*replies):
    it = iter(replies)
    return lambda req: next(it)


def test_a_429_is_waited_out_as_retry_after_says_then_answered(tmp_path):
    with fake_tiers(scripted(Reply(status=429, retry_after="1"), Reply(calls=[PORCH_ON], text="On."))) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                t0 = time.monotonic()
                msgs = await ask(ctx, "r1", budget_ms=5000)
                return msgs, time.monotonic() - t0, ctx.router.breakers["local"].failures
        msgs, took, failures = run(go())
    assert msgs[-1]["text"] == "On." and len(a.requests) == 2
    assert took >= 1.0  # not asked again before the provider said
    assert failures == 0  # a rate limit is not a sign the tier is down


def test_a_429_longer_than_the_budget_says_when_to_ask_again(tmp_path):
    with fake_tiers(lambda req: Reply(status=429, retry_after="30")) as (a,):
        cfg = config([Tier("local", a.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                first = await ask(ctx, "r1")
                second = await ask(ctx, "r2")  # the tier is known to be limited: not asked again
                return first, second
        first, second = run(go())
    assert "tier 'local' is rate limited (HTTP 429: Rate limit reached for requests.)" in first[-1]["err"]
    assert "ask again in 30 s" in first[-1]["err"]
    assert "rate limited" in second[-1]["err"] and "ask again in" in second[-1]["err"]
    assert len(a.requests) == 1


def api_app(cfg):
    """(router, http client factory) of a bridge's HTTP app over the config's tiers."""
    async def go(check):
        costs = CostStore(cfg.cost)
        try:
            async with HttpClient() as http:
                router = Router(cfg, provider_factory(http))
                app = make_app(token=TOKEN, router=router, costs=costs, fleet=None, hub=None, metrics=None)
                async with test_utils.TestClient(test_utils.TestServer(app)) as http:
                    return await check(router, http)
        finally:
            costs.close()
    return go


def test_v1_answers_a_providers_429_with_429_and_retry_after(tmp_path):
    with fake_tiers(lambda req: Reply(status=429, retry_after="20")) as (a,):
        cfg = config([Tier("premium", a.base_url, "p")], tmp_path)

        async def check(router, http):
            r = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
            return r.status, r.headers.get("Retry-After"), await r.json()
        status, retry_after, body = asyncio.run(api_app(cfg)(check))
    assert status == 429 and retry_after == "20"
    assert body["error"]["code"] == "rate_limit_exceeded" and "rate limited" in body["error"]["message"]


def test_failing_v1_requests_cannot_open_the_breaker_devices_use(tmp_path):
    failing = {"on": True}
    with fake_tiers(lambda req: Reply(status=500) if failing["on"] else Reply(text="fine")) as (a,):
        cfg = config([Tier("premium", a.base_url, "p")], tmp_path)

        async def check(router, http):
            statuses = []
            while router.api_breakers["premium"].state != "open" and len(statuses) < 5:
                statuses.append((await http.post("/v1/chat/completions", json=BODY, headers=AUTH)).status)
            api, device = router.api_breakers["premium"].state, router.breakers["premium"].state
            refused = (await http.post("/v1/chat/completions", json=BODY, headers=AUTH)).status
            return statuses, api, device, refused
        statuses, api, device, refused = asyncio.run(api_app(cfg)(check))
    assert set(statuses) == {502} and api == "open" and refused == 503  # /v1 callers are cut off...
    assert device == "closed"                                            # ...devices are not


def test_a_bad_v1_request_the_provider_refuses_is_a_400_naming_the_tier(tmp_path):
    with fake_tiers(lambda req: Reply(status=400)) as (a,):
        cfg = config([Tier("premium", a.base_url, "p")], tmp_path)

        async def check(router, http):
            r = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
            return r.status, await r.json()
        status, body = asyncio.run(api_app(cfg)(check))
    assert status == 400 and "tier 'premium' refused the request (HTTP 400: Invalid request.)" in \
        body["error"]["message"]
    assert len(a.requests) == 1  # not retried: the same request would be refused the same way


def _raw_post(port: int, body: dict) -> tuple[int, dict[str, str], dict]:
    """(status, headers with lower-case names, JSON body) of one POST written and read off a plain socket."""
    import json
    import socket
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(rest)


def test_v1_over_its_daily_budget_says_when_the_budget_resets(tmp_path):
    """A spent budget is a 429 whose Retry-After (RFC 9110 delay-seconds) is the time to the budget's reset,
    00:00 UTC: a client that backs off as told comes back when it can be answered, not before."""
    with fake_tiers(lambda req: Reply(text="ok")) as (a,):
        cfg = config([Tier("premium", a.base_url, "p", price_in=1000.0, price_out=1000.0)], tmp_path,
                     daily_budget_usd=0.001)  # one answer spends it

        async def check(router, http):
            first = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
            asked_at = time.time()
            spent = await asyncio.to_thread(_raw_post, http.port, BODY)
            return first.status, asked_at, spent
        first, asked_at, (status, headers, body) = asyncio.run(api_app(cfg)(check))
    assert first == 200
    assert status == 429 and "daily budget" in body["error"]["message"], body
    to_midnight = 86400 - asked_at % 86400
    assert headers.get("retry-after", "").isdigit(), headers
    assert abs(int(headers["retry-after"]) - to_midnight) <= 2, (headers["retry-after"], to_midnight)
    assert len(a.requests) == 1


def test_when_every_tier_fails_the_error_names_each_tier_and_its_reason(tmp_path):
    """The device's err and the /v1 error say what each tier tried answered, not only the last one: a person
    fixing a route needs to know that premium is down and commodity has a wrong model name."""
    with fake_tiers(lambda req: Reply(status=500), lambda req: Reply(status=404)) as (a, b):
        cfg = config([Tier("premium", a.base_url, "p"), Tier("commodity", b.base_url, "c")], tmp_path)

        async def device():
            async with bridge_ctx(cfg) as ctx:
                return (await ask(ctx, "r1"))[-1]

        async def check(router, http):
            r = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
            return r.status, (await r.json())["error"]["message"]
        done = run(device())
        status, message = asyncio.run(api_app(cfg)(check))
    for err in (done["err"], message):
        assert err.startswith("tier 'premium' failed: HTTP 500"), err
        assert "tier 'commodity' refused the request (HTTP 404: " in err and "check its model name and URL" in err
    assert status == 502


def test_the_error_naming_each_tier_is_bounded(tmp_path):
    """Four tiers, each quoting a long provider message: every tier and what to fix still shows, within
    MAX_FAILURE_CHARS."""
    from bridge.reasons import MAX_FAILURE_CHARS
    from tests.bridge.test_provider_requests import openai_error, provider_answering

    names = ["premium", "commodity", "local", "backup"]
    body = openai_error("x" * 400, "invalid_request_error", None, param="tools[0]." + "y" * 200)

    async def go():
        async with provider_answering(400, body) as (url, asked):
            cfg = config([Tier(n, url, "m") for n in names], tmp_path)
            async with bridge_ctx(cfg) as ctx:
                return (await ask(ctx, "r1"))[-1]["err"], len(asked)
    err, asked = run(go())
    assert asked == 4 and len(err) <= MAX_FAILURE_CHARS, (len(err), err)
    for n in names:
        assert f"tier '{n}' refused the request (HTTP 400: xxx" in err, err
    assert err.count("its message says why") == 4, err


def test_a_round_out_of_budget_names_the_tier_that_failed_before(tmp_path):
    with fake_tiers(lambda req: Reply(status=500), lambda req: Reply(text="late", ttft_ms=3000)) as (a, b):
        cfg = config([Tier("premium", a.base_url, "p"), Tier("local", b.base_url, "l")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return (await ask(ctx, "r1", budget_ms=400))[-1]
        done = run(go())
    assert done["err"].startswith("tier 'premium' failed: HTTP 500"), done
    assert done["err"].endswith("; then tier 'local' did not finish within budget_ms=400"), done
    assert done["tier"] == "local"


@pytest.mark.parametrize("message, code", [
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 9120 tokens. "
     "Please reduce the length of the messages.", "context_length_exceeded"),  # OpenAI (and vLLM, without code)
    ("request (3135 tokens) exceeds the available context size (1024 tokens), try increasing it", None),  # llama
])
def test_a_prompt_over_the_context_says_to_give_the_server_a_larger_one(message, code):
    advice = refusal_advice(ProviderError("http", message, 400, code=code))
    assert "longer than the model's context" in advice and "llama-server -c" in advice
    assert refusal_advice(ProviderError("http", "'tools' is not valid", 400)).endswith("(its message says why)")


NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
             b"</center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n")
WEB_APP = b"<!DOCTYPE html><html><head><title>Open WebUI</title></head><body><div id=app></div></body></html>"
# what servers that are no LLM API answer a POST with, by the path's first part: a reverse proxy in front of a
# stopped server, a web app's page (200), Ollama at an address without /v1; else Python's own 501 page
# ("Unsupported method ('POST')"), as `python -m http.server` answers
PAGES = {"proxied": (502, "text/html", NGINX_502), "app": (200, "text/html", WEB_APP),
         "ollama": (404, "text/plain", b"404 page not found")}


class _NoApi(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the name http.server looks for)
        answer = PAGES.get(self.path.split("/")[1])
        if answer is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        status, kind, body = answer
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def device_err(tmp_path, path, model="m"):
    """The device's err for one ask whose only tier is `path` on a server that is no LLM API, and the tier's URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        cfg = config([Tier("local", url, model)], tmp_path)

        async def device():
            async with bridge_ctx(cfg) as ctx:
                return (await ask(ctx, "x1"))[-1]
        return run(device())["err"], url
    finally:
        server.shutdown()


@pytest.mark.parametrize("path, model, said", [
    ("/ollama", "qwen2.5:7b",
     "(model 'qwen2.5:7b' at {url}); OpenAI-compatible servers answer under /v1: try base_url {url}/v1"),
    ("/ollama/v1", "local", "(model 'local' (WISP_LOCAL_MODEL sets it) at {url})"),
], ids=["no /v1", "model unset"])
def test_a_404_names_the_model_and_url_asked_and_a_missing_v1(tmp_path, path, model, said):
    """WISP_LOCAL_URL=http://host:11434, Ollama's address as its own docs give it, is a 404 for every request;
    so is WISP_LOCAL_URL without WISP_LOCAL_MODEL on a server that needs the name (Ollama, vLLM)."""
    err, url = device_err(tmp_path, path, model)
    assert err == "tier 'local' refused the request (HTTP 404: 404 page not found): check its model name and URL " + \
        said.format(url=url), err


@pytest.mark.parametrize("path, said", [("/proxied/v1", "HTTP 502: 502 Bad Gateway: nginx/1.22.1"),
                                        ("/app/v1", "expected an event stream, got Open WebUI"),
                                        ("/v1", "HTTP 501: Error response: Error code: 501 Message: Unsupported "
                                                "method ('POST')")])
def test_an_html_page_from_a_wrong_url_is_quoted_as_words_with_what_to_check(tmp_path, path, said):
    """A URL that reaches a web page instead of the API (a proxy in front of a stopped server, a web UI's port)
    answers with HTML: the user reads its words, not its markup, and that the URL is the thing to check."""
    err, url = device_err(tmp_path, path)
    assert said in err and "<" not in err, err
    assert f"(a web page, not an API's answer: check that {url}/chat/completions is the server's API)" in err, err
