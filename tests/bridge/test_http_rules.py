"""The bridge's HTTP API against the rules its clients rely on, over real sockets to a running bridge: HTTP
semantics (RFC 9110: 405 with Allow, 401 with a challenge, 415, 408, 426), JSON bodies that are wrong in the
ways that parse (unknown fields, lone surrogates, numbers that overflow, dates that do not exist), and the
event stream of /v1 (what proxies need to pass it on as it comes)."""
import asyncio
import json
import socket
import time
from urllib.parse import quote, urlsplit

import pytest

from bridge.web import body as body_mod
from bridge.web.openapi import spec
from bridge.web.server import make_app, start
from tests.bridge.apistack import TOKEN, ApiStack
from tests.support import Probe

DEV = "rules1"
ASK = f"/api/devices/{DEV}/ask"
CMD = f"/api/devices/{DEV}/cmd"
CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def api(broker):
    s = ApiStack(broker, DEV)
    yield s
    s.close()


def exchange(api, request: bytes, timeout: float = 30) -> tuple[int, dict, bytes]:
    """(status, headers with lower-cased names, body) of one raw HTTP/1.1 exchange on a fresh connection."""
    url = urlsplit(api.base)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as c:
        c.sendall(request)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def http(method: str, path: str, body: bytes | None = None, ctype: str | None = "application/json",
         auth: str = f"Bearer {TOKEN}") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    if body is not None:
        head += (f"Content-Type: {ctype}\r\n" if ctype else "") + f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def error_of(raw: bytes) -> str:
    return json.loads(raw)["error"]["message"]


# ---- status codes and their required headers ----------------------------------------------------------------
def test_405_says_which_methods_the_path_allows(api):
    def allowed(method, path):
        status, headers, raw = exchange(api, http(method, path))
        assert status == 405 and "Method Not Allowed" in error_of(raw)
        return {m.strip() for m in headers.get("allow", "").split(",")}
    assert {"GET", "HEAD"} <= allowed("DELETE", "/api/devices")
    assert allowed("GET", CHAT) == {"POST"}


def test_401_names_the_bearer_scheme(api):
    status, headers, raw = exchange(api, http("GET", "/api/devices", auth=""))
    assert status == 401 and json.loads(raw)["error"]["code"] == "invalid_api_key"
    assert headers.get("www-authenticate", "").startswith("Bearer")


def test_a_token_that_is_not_utf8_gets_401_not_a_bare_500(api):
    status, headers, raw = exchange(api, http("GET", "/api/devices", auth="Bearer \xe9t\xe9"))  # latin-1 bytes
    assert status == 401 and "WISP_API_TOKEN" in error_of(raw)


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=x", "application/octet-stream", "image/png"])
def test_a_body_declared_as_something_else_than_json_gets_415(api, ctype):
    for path, body in ((CMD, {"tool": "gpio_read", "args": {"pin": "door"}}), (CHAT, {"model": "local",
                                                                                      "messages": MSGS})):
        status, _, raw = exchange(api, http("POST", path, json.dumps(body).encode(), ctype=ctype))
        assert status == 415 and "Content-Type: application/json" in error_of(raw), (path, raw)


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON", None,
                                   "application/x-www-form-urlencoded", "text/plain"])   # curl -d, scripts
def test_json_and_an_unlabelled_body_are_taken(api, ctype):
    body = json.dumps({"tool": "gpio_read", "args": {"pin": "door"}}).encode()
    status, _, raw = exchange(api, http("POST", CMD, body, ctype=ctype))
    assert status == 200 and json.loads(raw)["result"] == "door=1"


@pytest.mark.parametrize("name", ["%00", "a" * 300, "x%00.js"])
def test_a_dashboard_file_name_no_file_can_have_is_a_404_not_an_internal_error(api, name, caplog):
    """Before: a NUL byte or a name over the file system's 255 bytes raised in the file check, a 500 and a
    traceback in the bridge's log for a request anyone can send (the dashboard's files need no token)."""
    status, _, raw = exchange(api, http("GET", "/static/" + name, auth=""))
    assert status == 404 and "Not Found" in error_of(raw), raw
    assert "Traceback" not in caplog.text and "failed" not in caplog.text


@pytest.mark.parametrize("request_line", [b"GET /v1/models/" + b"m" * 9000 + b" HTTP/1.1", b"GET / HTTP/9.9",
                                          b"GET /api/devices HTTP/1.1\r\nBad Header"])
def test_a_malformed_request_is_a_400_and_one_log_line_not_a_traceback(api, request_line, caplog):
    """Before: aiohttp logged each malformed request (an 8 KB URL, a broken header line) as an ERROR with a
    whole traceback: anyone who can reach the port could fill the bridge's log with them."""
    status, _, raw = exchange(api, request_line + b"\r\nHost: x\r\n\r\n")
    assert status == 400, raw
    assert "Traceback" not in caplog.text, caplog.text
    lines = [r for r in caplog.records if r.name.startswith("aiohttp") or "malformed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "WARNING" and lines[0].exc_info is None, lines


def test_the_events_path_asks_a_plain_get_to_upgrade_with_426(api):
    for method in ("GET", "HEAD"):
        status, headers, raw = exchange(api, http(method, "/api/events"))
        assert status == 426 and headers.get("upgrade") == "websocket", (method, raw)
    assert "WebSocket" in error_of(exchange(api, http("GET", "/api/events"))[2])


@pytest.mark.parametrize("headers, words", [
    ("Sec-WebSocket-Version: 99\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Unsupported version: 99"),
    ("Sec-WebSocket-Version: 13", "Handshake error"),  # no key
    ("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short", "Handshake error")])
def test_a_websocket_handshake_that_is_wrong_gets_400_saying_what(api, headers, words):
    """Before: only "Bad Request: GET /api/events", which leaves a client's author guessing."""
    request = http("GET", "/api/events").replace(b"Connection: close\r\n", (
        "Upgrade: websocket\r\nConnection: Upgrade, close\r\n" + headers + "\r\n").encode())
    status, _, raw = exchange(api, request)
    assert status == 400 and words in error_of(raw), raw


@pytest.mark.parametrize("path", [CHAT, CMD])
def test_a_compressed_body_that_does_not_decode_is_a_400_not_an_internal_error(api, path, caplog):
    """Before: `Content-Encoding: gzip` on bytes that are not gzip was a 500 with two tracebacks in the log."""
    request = http("POST", path, b"0123456789").replace(b"Content-Length", b"Content-Encoding: gzip\r\nContent-Length")
    status, _, raw = exchange(api, request)
    assert status == 400 and "gzip" in error_of(raw), raw
    assert "Traceback" not in caplog.text, caplog.text


def test_a_body_that_stalls_gets_408_and_the_connection_closed(monkeypatch):
    monkeypatch.setattr(body_mod, "BODY_TIMEOUT_S", 0.5)

    async def go():
        app = make_app(token=TOKEN, router=None, costs=None, fleet=None, hub=None, metrics=None)
        runner, url = await start(app, "127.0.0.1", 0)
        try:
            r, w = await asyncio.open_connection(urlsplit(url).hostname, urlsplit(url).port)
            w.write(http("POST", "/api/devices/d1/ask", b"x" * 100)[:-100] + b'{"text"')  # 7 of 100 bytes
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)  # answered at once, not when the
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])  # client gives up
            answer = head + await asyncio.wait_for(r.readexactly(length), 5)
            w.close()
            return answer
        finally:
            await runner.cleanup()
    answer = asyncio.run(go())
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in answer
    assert b"Connection: close" in answer  # the rest of that body must not be read as the next request


# ---- JSON bodies that parse but are wrong ---------------------------------------------------------------------
@pytest.mark.parametrize("path,body,field", [
    (CMD, {"tool": "gpio_read", "args": {"pin": "door"}, "timout_s": 2}, "timout_s"),
    (ASK, {"text": "hi", "wait": 5}, "wait"),
    (f"/api/devices/{DEV}/pins/porch_light", {"state": "ON", "pin": 5}, "pin"),
    (f"/api/devices/{DEV}/ota", {"version": "0.2.0", "forced": True}, "forced"),
    ("/api/ota", {"devices": [DEV], "canaries": 2}, "canaries"),
])
def test_unknown_fields_are_refused_by_name(api, path, body, field):
    status, answer = api.call("POST", path, body)
    assert status == 400 and f"unknown field(s): {field}" in answer["error"]["message"], answer


def test_the_openapi_document_says_request_bodies_are_closed():
    for ops in spec()["paths"].values():
        for op in ops.values():
            if "requestBody" in op:
                assert op["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"] is False


LONE_SURROGATE = b'"hi \\ud800"'


@pytest.mark.parametrize("path,raw", [
    (ASK, b'{"text": ' + LONE_SURROGATE + b'}'),
    (CMD, b'{"tool": "gpio_read", "args": {"pin": ' + LONE_SURROGATE + b'}}'),
    (CHAT, b'{"model": "local", "messages": [{"role": "user", "content": ' + LONE_SURROGATE + b'}]}'),
])
def test_a_lone_surrogate_is_a_400_not_an_internal_error_or_a_tier_failure(api, path, raw):
    before = api.call("GET", "/api/tiers")[1]["tiers"]["local"]["errors"]
    status, body = api.call("POST", path, raw=raw)
    assert status == 400 and "lone UTF-16 surrogate" in body["error"]["message"], body
    assert api.call("GET", "/api/tiers")[1]["tiers"]["local"]["errors"] == before  # not blamed on the tier


def test_a_surrogate_pair_is_a_character_and_passes(api):
    status, body = api.call("POST", CMD, raw=b'{"tool": "gpio_read", "args": {"pin": "\\ud83d\\ude00"}}')
    assert status == 200 and body["result"].startswith("Error"), body  # the device's answer: no such pin


@pytest.mark.parametrize("path,raw", [
    (CMD, b'{"tool": "gpio_read", "args": {"pin": 1e400}}'),
    (CMD, b'{"tool": "gpio_read", "args": {"pin": -1e400}}'),
    (CHAT, b'{"model": "local", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}'),
    (CHAT, b'{"model": "local", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'),
])
def test_numbers_json_cannot_carry_on_are_refused(api, path, raw):
    status, body = api.call("POST", path, raw=raw)
    assert status == 400 and "not valid JSON" in body["error"]["message"], body


@pytest.mark.parametrize("day", ["2024-13-45", "2024-02-30", "2024-01-01\n", "\u0662\u0660\u0662\u0664-01-01"])
def test_usage_day_must_be_a_real_date(api, day):
    status, body = api.call("GET", f"/api/usage?day={quote(day)}")
    assert status == 400 and "YYYY-MM-DD" in body["error"]["message"], body


def test_usage_of_a_real_leap_day_is_answered(api):
    status, body = api.call("GET", "/api/usage?day=2024-02-29")
    assert status == 200 and body["day"] == "2024-02-29"


@pytest.mark.parametrize("extra,words", [
    ({"stream_options": "yes"}, "'stream_options'"),
    ({"stream_options": {"include_usage": "yes"}}, "'stream_options'"),
    ({"stream": "false"}, "'stream' must be true or false"),
    ({"n": True}, "'n' must be 1"),
])
def test_chat_fields_of_the_wrong_type_are_400_not_coerced_or_500(api, extra, words):
    status, body = api.call("POST", CHAT, {"model": "local", "messages": MSGS, **extra})
    assert status == 400 and words in body["error"]["message"], body


# ---- the /v1 event stream --------------------------------------------------------------------------------------
def test_the_chat_event_stream_is_well_formed_and_not_buffered_by_proxies(api):
    body = json.dumps({"model": "local", "messages": MSGS, "stream": True}).encode()
    status, headers, raw = exchange(api, http("POST", CHAT, body))
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert headers.get("x-accel-buffering") == "no" and headers.get("cache-control") == "no-cache"
    text = b"".join(_dechunk(raw)).decode()
    events = text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ") and "\n" not in event  # one data line per event
        json.loads(event[len("data: "):])


def _dechunk(raw: bytes):
    while raw:
        size, _, raw = raw.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return
        yield raw[:n]
        raw = raw[n + 2:]


# ---- the description matches what is served --------------------------------------------------------------------
def test_a_device_known_only_by_its_status_matches_the_described_summary(broker, api):
    probe = Probe(broker.host, broker.port)
    try:
        probe.publish("wisp/bare1/status", {"v": 1, "state": "online"}, retain=True)
        for _ in range(50):
            status, d = api.call("GET", "/api/devices/bare1")
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200 and d["boots"] is None and d["fw"] is None
        described = spec()["paths"]["/api/devices"]["get"]["responses"]["200"]["content"]["application/json"]
        summary = described["schema"]["properties"]["devices"]["items"]["properties"]
        for key in ("boots", "fw", "board", "last_seen", "ota"):  # what a bare status leaves null
            assert summary[key].get("nullable") is True, key
    finally:
        probe.publish("wisp/bare1/status", b"", retain=True)
        probe.close()
