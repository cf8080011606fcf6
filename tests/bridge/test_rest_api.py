"""The bridge's REST API and event stream against the real broker and a simulated device running the real
firmware: auth on everything but the dashboard's files, clear 4xx errors for bad input (never a 500), and
ask / cmd / pin / listing round trips that reach the device and come back with its answer."""
import asyncio
import datetime
import json
import logging

import aiohttp
import pytest

from bridge.fleet import Fleet
from bridge.web.events import CLIENT_QUEUE_MAX, EventHub
from bridge.web.openapi import spec
from bridge.web.server import make_app
from tests.bridge.apistack import AUTH, TOKEN, ApiStack
from tests.support import Probe

DEV = "rest1"


@pytest.fixture(scope="module")
def api(broker):
    s = ApiStack(broker, DEV)
    yield s
    s.close()


PROTECTED = [("GET", "/api/devices"), ("GET", f"/api/devices/{DEV}"), ("POST", f"/api/devices/{DEV}/ask"),
             ("POST", f"/api/devices/{DEV}/cmd"), ("POST", f"/api/devices/{DEV}/pins/porch_light"),
             ("GET", f"/api/devices/{DEV}/schedules"), ("GET", f"/api/devices/{DEV}/routines"),
             ("GET", f"/api/devices/{DEV}/memory"), ("GET", "/api/usage"), ("GET", "/api/tiers"),
             ("GET", "/api/events"), ("GET", "/metrics"), ("GET", "/v1/models")]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
                         ids=["no token", "wrong token", "no Bearer prefix"])
def test_every_api_path_needs_the_token(api, headers):
    for method, path in PROTECTED:
        status, body = api.call(method, path, {"text": "hi", "tool": "gpio_read", "state": "ON"}, headers=headers)
        assert status == 401, (method, path, status, body)
        assert "WISP_API_TOKEN" in body["error"]["message"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(api, scheme):
    status, body = api.call("GET", "/api/devices", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert status == 200, body


def test_the_dashboard_files_and_api_description_are_public(api):
    for path, marker in [("/", "<title>wisp dashboard"), ("/static/app.js", "/api/events"),
                         ("/static/style.css", ".card")]:
        status, body = api.call("GET", path, headers={})
        assert status == 200 and marker in body, path
    status, body = api.call("GET", "/api/openapi.json", headers={})
    assert status == 200 and body["openapi"].startswith("3.")
    status, _ = api.call("POST", "/", headers={})  # public means the files, not anything under /
    assert status == 401


def test_a_missing_dashboard_file_gets_the_same_json_404_as_any_path(api):
    for path in ("/static/no-such-file.js", "/static/", "/static/..%2Frest.py"):
        status, body = api.call("GET", path, headers={})
        assert status == 404 and isinstance(body, dict) and "Not Found" in body["error"]["message"], (path, body)


def test_the_events_socket_takes_the_token_as_a_query_parameter(api):
    async def connect(token):
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(f"{api.base}/api/events?access_token={token}") as ws:
                    return (await ws.receive_json(timeout=5))["type"]
            except aiohttp.WSServerHandshakeError as e:
                return e.status
    assert asyncio.run(connect("wrong")) == 401
    assert asyncio.run(connect(TOKEN)) == "hello"


BAD = [
    ("POST", f"/api/devices/{DEV}/ask", b"{not json", 400, "not valid JSON"),
    ("POST", f"/api/devices/{DEV}/ask", b"[1, 2]", 400, "JSON object"),
    ("POST", f"/api/devices/{DEV}/ask", b"{}", 400, "'text'"),
    ("POST", f"/api/devices/{DEV}/ask", json.dumps({"text": "x" * 513}).encode(), 400, "at most 512"),
    ("POST", f"/api/devices/{DEV}/ask", json.dumps({"text": "hi", "timeout_s": -1}).encode(), 400, "timeout_s"),
    ("POST", f"/api/devices/{DEV}/ask", json.dumps({"text": "hi", "timeout_s": True}).encode(), 400, "timeout_s"),
    ("POST", f"/api/devices/{DEV}/ask", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("POST", f"/api/devices/{DEV}/cmd", b'{"tool": "gpio_write", "args": {"pin": "fan", "value": NaN}}', 400,
     "NaN is not a JSON value"),
    ("POST", "/api/devices/NOT%20AN%20ID/ask", json.dumps({"text": "hi"}).encode(), 400, "not a device id"),
    ("POST", "/api/devices/nobody/ask", json.dumps({"text": "hi"}).encode(), 404, "no device 'nobody'"),
    ("GET", "/api/devices/nobody", None, 404, "no device 'nobody'"),
    ("POST", f"/api/devices/{DEV}/cmd", json.dumps({"tool": 5}).encode(), 400, "'tool'"),
    ("POST", f"/api/devices/{DEV}/cmd", json.dumps({"tool": "gpio_read", "args": [1]}).encode(), 400, "'args'"),
    ("POST", f"/api/devices/{DEV}/cmd", json.dumps({"tool": "publish", "args": {"m": "x" * 5000}}).encode(), 413,
     "reads at most 4096 in one message"),
    ("POST", f"/api/devices/{DEV}/pins/door", json.dumps({"state": "ON"}).encode(), 400, "is an input"),
    ("POST", f"/api/devices/{DEV}/pins/garage", json.dumps({"state": "ON"}).encode(), 404, "no pin 'garage'"),
    ("POST", f"/api/devices/{DEV}/pins/porch_light", json.dumps({"state": "BRIGHT"}).encode(), 400, "ON"),
    ("POST", f"/api/devices/{DEV}/pins/porch_light", json.dumps({"state": 1}).encode(), 400, "ON"),
    ("GET", "/api/usage?day=yesterday", None, 400, "YYYY-MM-DD"),
    ("GET", "/api/usage?days=1000", None, 400, "'days'"),
    ("GET", "/api/usage?day=0001-01-05&days=23", None, 400, "before 0001-01-01"),
    ("GET", "/api/events?device=Bad!", None, 400, "device id"),
    ("GET", "/api/nothing-here", None, 404, "Not Found"),
    ("DELETE", "/api/devices", None, 405, "Method Not Allowed"),
    ("POST", "/v1/chat/completions", b"{}", 400, "messages"),
]


@pytest.mark.parametrize("method,path,raw,status,words", BAD, ids=[f"{b[3]} {b[4]}" for b in BAD])
def test_bad_input_gets_a_clear_4xx_json_error(api, method, path, raw, status, words):
    got, body = api.call(method, path, raw=raw)
    assert got == status, body
    assert words in body["error"]["message"]


def test_a_command_in_any_script_that_fits_the_device_reaches_it(api):
    # the size check counted the command with \u escapes (6 bytes per "é"), so 1,500 of them were refused
    # with 413 though the device, sent UTF-8, reads them in 3,000 bytes; it counts what is published now
    got, body = api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": "memory_set",
                                                             "args": {"key": "note", "value": "é" * 1500}})
    assert got == 200 and body["tool"] == "memory_set" and isinstance(body["result"], str), body


def test_a_body_over_the_size_limit_is_refused_with_413(api):
    got, body = api.call("POST", f"/api/devices/{DEV}/ask", raw=b'{"text": "' + b"x" * (2 << 20) + b'"}')
    assert got == 413 and "too large" in body["error"]["message"]


def test_devices_list_and_detail_show_online_state_and_pins(api):
    status, body = api.call("GET", "/api/devices")
    mine = [d for d in body["devices"] if d["id"] == DEV]
    assert status == 200 and mine and mine[0]["online"] and mine[0]["fw"] and mine[0]["last_seen"]
    status, d = api.call("GET", f"/api/devices/{DEV}")
    assert status == 200
    assert {p["name"]: p["mode"] for p in d["pins"]} == {"door": "in", "porch_light": "out"}
    assert dict((p["name"], p["state"]) for p in d["pins"])["door"] == "ON"  # pulled up
    assert "gpio_write" in [t["name"] for t in d["manifest"]["tools"]]


def test_ask_round_trip_goes_through_the_tier_and_acts_on_the_device(api):
    status, reply = api.call("POST", f"/api/devices/{DEV}/ask", {"text": "light up the porch"})
    assert status == 200, reply
    assert reply["ok"] and reply["text"] == "The porch light is on." and reply["tier"] == "local"
    assert reply["path"] == "llm" and reply["id"].startswith("ask-")
    _, d = api.call("GET", f"/api/devices/{DEV}")
    assert {p["name"]: p["state"] for p in d["pins"]}["porch_light"] == "ON"
    assert [e["type"] for e in d["recent"] if e["type"] in ("ask", "reply")][-2:] == ["ask", "reply"]
    rounds = [e for e in d["recent"] if e["type"] == "tier"]      # the rounds, with the model's tool calls
    assert rounds[-2]["calls"] == ["gpio_write(pin=porch_light, value=1)"] and rounds[-1]["calls"] == []


def test_cmd_round_trip_returns_the_tool_result(api):
    status, res = api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": "gpio_read", "args": {"pin": "door"}})
    assert status == 200 and res["ok"] and res["result"] == "door=1"
    status, res = api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": "warp_drive"})
    assert status == 200 and not res["ok"] and res["result"].startswith("Error: unknown tool 'warp_drive'")


def test_schedules_routines_and_memory_come_from_the_device(api):
    define = {"tool": "routine_define", "args": {"name": "night", "steps": [
        {"tool": "gpio_write", "args": {"pin": "porch_light", "value": 0}}]}}
    assert api.call("POST", f"/api/devices/{DEV}/cmd", define)[1]["ok"]
    assert api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": "memory_set",
                                                       "args": {"key": "owner", "value": "ann"}})[1]["ok"]
    _, routines = api.call("GET", f"/api/devices/{DEV}/routines")
    _, memory = api.call("GET", f"/api/devices/{DEV}/memory")
    _, schedules = api.call("GET", f"/api/devices/{DEV}/schedules")
    assert routines["tool"] == "routine_list" and "night" in routines["result"]
    assert "owner=ann" in memory["result"]
    assert schedules["ok"] and schedules["tool"] == "schedule_list"


def _listed_whole(api, listing: str, fill: list[tuple[str, dict]], empty: list[tuple[str, dict]], shown: list[str]):
    """GET a listing after the commands in `fill` made it long: each of `shown` is in it once, and nothing
    of the device's pages (a "more: skip", a cut) is left. `empty` undoes `fill`."""
    try:
        for tool, args in fill:
            status, body = api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": tool, "args": args})
            assert status == 200 and body["ok"], body
        status, listed = api.call("GET", f"/api/devices/{DEV}/{listing}")
        assert status == 200 and listed["ok"], listed
        for text in shown:
            assert listed["result"].count(text) == 1, (text, listed["result"])
        assert "more: skip" not in listed["result"] and not listed["result"].endswith("...")
    finally:
        for tool, args in empty:
            api.call("POST", f"/api/devices/{DEV}/cmd", {"tool": tool, "args": args})


def test_the_schedules_listing_shows_every_job_of_a_long_list(api):
    # a tool result is one short line (the device cuts it at 200 characters), so six jobs came
    # back as the first two and "..."; the device now lists them in pages and the bridge joins them
    names = ["wake_lights", "water_garden", "feed_the_cat", "close_blinds", "night_check", "heating_off"]
    _listed_whole(api, "schedules",
                  [("schedule_add", {"spec": f"{i * 5} {6 + i} * * 1-5", "name": name,
                                     "prompt": f"Check the {name} for me"}) for i, name in enumerate(names)],
                  [("schedule_remove", {"name": name}) for name in names], [name + " [" for name in names])


def test_the_memory_listing_shows_every_fact_of_a_long_list(api):
    # 30 facts came back as the first few and "..." (and a model saw no more of them either)
    keys = [f"plant_{i:02d}_watered_on" for i in range(30)]
    _listed_whole(api, "memory",
                  [("memory_set", {"key": k, "value": "the first Monday of the month"}) for k in keys],
                  [("memory_delete", {"key": k}) for k in keys], [" facts: "] + [k + "=" for k in keys])


def test_setting_a_pin_returns_the_state_the_device_reports(broker, api):
    for state in ("OFF", "TOGGLE", "off"):
        status, body = api.call("POST", f"/api/devices/{DEV}/pins/porch_light", {"state": state})
        assert status == 200, body
    assert body == {"name": "porch_light", "state": "OFF"}
    probe = Probe(broker.host, broker.port, topics=(f"wisp/{DEV}/state/porch_light",))
    try:
        assert probe.wait_for(f"wisp/{DEV}/state/porch_light", timeout=3) == "OFF"  # retained by the device
    finally:
        probe.close()


def test_offline_and_silent_devices_get_409_and_504(broker, api):
    probe = Probe(broker.host, broker.port)
    try:
        probe.publish("wisp/gone1/status", {"v": 1, "state": "offline"}, retain=True)
        probe.publish("wisp/mute1/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        status, body = api.call("GET", "/api/devices/mute1")
        for _ in range(50):
            if status == 200 and api.call("GET", "/api/devices/gone1")[0] == 200:
                break
            status, body = api.call("GET", "/api/devices/mute1")
        status, body = api.call("POST", "/api/devices/gone1/ask", {"text": "hello"})
        assert status == 409 and "offline" in body["error"]["message"]
        status, body = api.call("POST", "/api/devices/mute1/cmd", {"tool": "gpio_read", "timeout_s": 1})
        assert status == 504 and "no cmd/res from device mute1 within 1 s" in body["error"]["message"]
    finally:
        for dev in ("gone1", "mute1"):
            probe.publish(f"wisp/{dev}/status", b"", retain=True)
        probe.close()


def test_a_device_going_offline_while_an_ask_waits_gets_409_at_once(broker, api):
    # a power cut mid-ask: the broker publishes the device's last will; the ask is lost with its RAM,
    # so waiting out the timeout would only keep the caller for nothing (`wisp ask` stops there too)
    probe = Probe(broker.host, broker.port)
    try:
        probe.publish("wisp/cut1/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        for _ in range(50):
            if api.call("GET", "/api/devices/cut1")[0] == 200:
                break
        asked = asyncio.new_event_loop()
        try:
            async def ask_then_cut():
                async with aiohttp.ClientSession() as s:
                    call = asyncio.ensure_future(s.post(f"{api.base}/api/devices/cut1/ask", headers=AUTH,
                                                        json={"text": "light up the porch", "timeout_s": 30}))
                    await asyncio.to_thread(probe.wait_for, "wisp/cut1/ask", None, 5)
                    probe.publish("wisp/cut1/status", {"v": 1, "state": "offline"}, retain=True)
                    t0 = asyncio.get_running_loop().time()
                    resp = await asyncio.wait_for(call, 10)
                    return resp.status, await resp.json(), asyncio.get_running_loop().time() - t0
            status, body, waited = asked.run_until_complete(ask_then_cut())
        finally:
            asked.close()
        assert status == 409 and "cut1 went offline before it answered" in body["error"]["message"], body
        assert waited < 2
    finally:
        probe.publish("wisp/cut1/status", b"", retain=True)
        probe.close()


def test_garbage_from_a_device_does_not_break_the_api(broker, api, caplog):
    caplog.set_level(logging.ERROR)
    probe = Probe(broker.host, broker.port)
    try:
        for sub in ("status", "event", "reply", "cmd/res", "ask", "state/x", "state/a/b", "manifest"):
            for payload in (b"\xff\xfe", b"[]", b"{", b"null", b'{"id": {"deep": [1]}}'):
                probe.publish(f"wisp/junk1/{sub}", payload)
        probe.publish("wisp/junk1/reply", {"v": 1, "id": "nobody-waits", "ok": True, "text": "hi"})
        probe.wait_for("wisp/junk1/reply", lambda p: isinstance(p, dict) and p.get("id") == "nobody-waits")
    finally:
        probe.close()
    assert api.call("GET", "/api/devices")[0] == 200
    status, d = api.call("GET", "/api/devices/junk1")
    assert status == 200 and not d["online"]
    status, _ = api.call("POST", "/api/devices/junk1/ask", {"text": "hi"})
    assert status in (404, 409)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text  # no handler blew up


def test_hostile_replies_do_not_disturb_a_waiting_ask():
    async def main():
        sent = []
        fleet = Fleet(lambda topic, msg, qos=1: sent.append(msg))
        fleet.handle("d1", ["status"], b'{"v": 1, "state": "online"}')
        asked = asyncio.create_task(fleet.ask("d1", "hi", 2))
        await asyncio.sleep(0)
        for junk in (b'{"id": {"x": 1}}', b'{"id": [1]}', b'{"id": null}', b"[]", b"\xff", b'{"id": "other"}'):
            fleet.handle("d1", ["reply"], junk)
        asked_id = json.loads(sent[0])["id"]  # as published: the bytes that go on the wire
        fleet.handle("d1", ["reply"], json.dumps({"v": 1, "id": asked_id, "ok": True, "text": "yes"}).encode())
        return await asked
    assert asyncio.run(main())["text"] == "yes"


def test_usage_is_accounted_per_device_and_tier(api):
    api.call("POST", f"/api/devices/{DEV}/ask", {"text": "light up the porch"})
    status, u = api.call("GET", "/api/usage?days=7")
    assert status == 200
    row = [r for r in u["rows"] if r["device"] == DEV and r["tier"] == "local"][0]
    assert row["requests"] >= 2 and row["tokens_in"] > 0
    # the fake tier's prices: $2 per million in, $10 per million out
    assert row["cost_usd"] == pytest.approx((row["tokens_in"] * 2 + row["tokens_out"] * 10) / 1e6)
    assert u["by_device"][DEV]["cost_usd"] == pytest.approx(row["cost_usd"])
    assert u["daily"][-1]["day"] == u["day"] and u["total_usd"] >= row["cost_usd"]


def test_usage_has_a_daily_total_for_each_of_the_days_asked_even_without_requests(api):
    status, u = api.call("GET", "/api/usage?day=2020-02-28&days=3")  # no requests then: a chart of three zeros
    assert status == 200
    days = ("2020-02-26", "2020-02-27", "2020-02-28")
    assert u["daily"] == [{"day": d, "requests": 0, "cost_usd": 0.0} for d in days]
    api.call("POST", f"/api/devices/{DEV}/ask", {"text": "light up the porch"})
    status, u = api.call("GET", "/api/usage?days=7")
    assert len(u["daily"]) == 7 and u["daily"][-1]["day"] == u["day"] and u["daily"][-1]["requests"] >= 1
    assert u["daily"][0]["day"] == str(datetime.date.fromisoformat(u["day"]) - datetime.timedelta(days=6))


def test_tiers_show_live_statistics_and_breaker(api):
    status, t = api.call("GET", "/api/tiers")
    assert status == 200
    local = t["tiers"]["local"]
    assert local["breaker"] == "closed" and local["requests"] >= 2 and local["error_rate"] == 0
    assert t["routes"]["interactive"] == ["local"]


def test_events_stream_device_changes_and_tier_decisions(api):
    async def watch():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{api.base}/api/events?device={DEV}", headers=AUTH) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                history = await ws.receive_json(timeout=5)     # the recent rounds, before anything live
                assert history["type"] == "history" and all(e["type"] == "tier" for e in history["events"])
                async with s.post(f"{api.base}/api/devices/{DEV}/ask", json={"text": "light up the porch"},
                                  headers=AUTH) as r:
                    reply = await r.json()
                seen = []
                while not any(e["type"] == "reply" for e in seen):
                    seen.append(await ws.receive_json(timeout=5))
                return reply, seen
    reply, seen = asyncio.run(watch())
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "ask" and kinds[-1] == "reply" and all(e["device"] == DEV for e in seen)
    tiers = [e for e in seen if e["type"] == "tier"]
    assert [t["round"] for t in tiers] == [0, 1] and all(t["tier"] == "local" and t["ok"] for t in tiers)
    assert tiers[0]["class"] == "interactive" and tiers[0]["ms"] > 0
    assert seen[-1]["id"] == reply["id"] and seen[-1]["text"] == reply["text"]


def test_a_slow_event_client_loses_events_and_is_told_how_many():
    hub = EventHub()
    slow = hub.subscribe(None)
    other = hub.subscribe("dev9")
    for i in range(CLIENT_QUEUE_MAX + 10):
        hub.publish({"type": "state", "device": "dev1", "name": "x", "value": i})
    assert slow.queue.qsize() == CLIENT_QUEUE_MAX and slow.dropped == 10 and hub.dropped_total == 10
    assert other.queue.qsize() == 0  # filtered to its device: nothing queued, nothing dropped


def test_every_route_is_described_in_the_openapi_document():
    app = make_app(token=TOKEN, router=None, costs=None, fleet=None, hub=None, metrics=None)
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource.canonical.startswith(("/api/", "/metrics")) and r.method != "HEAD"}
    routes.discard(("GET", "/api/openapi.json"))
    described = {(m.upper(), p) for p, ops in spec()["paths"].items() for m in ops}
    assert routes == described


def test_too_many_waiting_requests_get_429_with_retry_after(broker, api, monkeypatch):
    monkeypatch.setattr("bridge.fleet.MAX_WAITING", 1)  # the bridge runs in this process: one waiter fills it
    probe = Probe(broker.host, broker.port)

    async def go():
        async with aiohttp.ClientSession(headers=AUTH) as s:
            waiting = asyncio.create_task(s.post(f"{api.base}/api/devices/mute2/cmd",
                                                 json={"tool": "gpio_read", "timeout_s": 3}))
            await asyncio.sleep(0.5)
            async with s.post(f"{api.base}/api/devices/mute2/cmd", json={"tool": "gpio_read"}) as r:
                busy = r.status, r.headers.get("Retry-After"), (await r.json())["error"]["message"]
            (await waiting).release()
            return busy
    try:
        probe.publish("wisp/mute2/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        for _ in range(50):
            if api.call("GET", "/api/devices/mute2")[0] == 200:
                break
        status, retry_after, message = asyncio.run(go())
        assert status == 429 and retry_after == "1", (status, retry_after, message)
        assert "already waiting for devices" in message
    finally:
        probe.publish("wisp/mute2/status", b"", retain=True)
        probe.close()
