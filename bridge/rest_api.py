"""REST API, WebSocket events, /metrics and the dashboard, on the same aiohttp server as /v1 (bridge/http_api.py
does the bearer-token check for all of them; only the dashboard's own files and the OpenAPI description are
public). Devices are reached through the bridge's MQTT link: ask and cmd wait, bounded, for the answer with
their id. Bad input gets a 4xx JSON error that says what to fix; nothing here answers a bare 500.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from pathlib import Path

from aiohttp import web

from bridge import fleet as fl
from bridge import protocol
from bridge.events import serve_events
from bridge.http_api import MAX_BODY_BYTES, PUBLIC, error
from bridge.metrics import CONTENT_TYPE
from bridge.openapi import spec

log = logging.getLogger("wisp.bridge.rest")

STATIC_DIR = Path(__file__).parent / "static"
ASK_TIMEOUT_S = 40.0  # default wait for a reply: the device's own round timeout (30 s) plus margin
CMD_TIMEOUT_S = 10.0  # a direct command runs one tool, no LLM
PIN_TIMEOUT_S = 5.0  # set/<pin> -> the state the device publishes back
MAX_TIMEOUT_S = 120.0  # longest wait a caller may ask for
MIN_TIMEOUT_S = 1.0    # shortest: less is no real wait for a device on any network
MAX_ASK_TEXT = protocol.MAX_ASK_TEXT
MAX_CMD_BYTES = protocol.MAX_PAYLOAD  # the device drops bigger commands unread
MAX_TOOL_NAME = 64
USAGE_DAYS_MAX = 31
_PIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FLEET, _HUB, _METRICS = web.AppKey("fleet", object), web.AppKey("hub", object), web.AppKey("metrics", object)
_ROUTER, _COSTS = web.AppKey("rest_router", object), web.AppKey("rest_costs", object)
# Tools the read-only listing endpoints run on the device.
LISTINGS = {"schedules": "schedule_list", "routines": "routine_list", "memory": "memory_list"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def add_rest_api(app: web.Application, *, fleet, hub, metrics, router, costs) -> None:
    """Register /api/*, /metrics and the dashboard on the app that serves /v1."""
    app[_FLEET], app[_HUB], app[_METRICS], app[_ROUTER], app[_COSTS] = fleet, hub, metrics, router, costs
    app[PUBLIC] = _is_public
    app.middlewares.append(_json_errors)
    r = app.router
    r.add_get("/", _index)
    r.add_static("/static/", STATIC_DIR)
    r.add_get("/api/openapi.json", _openapi)
    r.add_get("/api/devices", _devices)
    r.add_get("/api/devices/{id}", _device)
    r.add_post("/api/devices/{id}/ask", _ask)
    r.add_post("/api/devices/{id}/cmd", _cmd)
    r.add_post("/api/devices/{id}/pins/{name}", _set_pin)
    for what, tool in LISTINGS.items():
        r.add_get(f"/api/devices/{{id}}/{what}", _listing(tool))
    r.add_get("/api/usage", _usage)
    r.add_get("/api/tiers", _tiers)
    r.add_get("/api/events", _events)
    r.add_get("/metrics", _metrics)


def _is_public(request: web.Request) -> bool:
    """The dashboard's files carry no data (it asks for the token itself); the API description is public too."""
    return request.method in ("GET", "HEAD") and (
        request.path in ("/", "/api/openapi.json") or request.path.startswith("/static/"))


@web.middleware
async def _json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except BadRequest as e:
        return error(e.status, str(e))
    except web.HTTPException as e:  # aiohttp's own 404/405/413: the same JSON shape as everything else
        if e.status < 400:
            raise
        hint = "; see /api/openapi.json" if e.status in (404, 405) else ""
        return error(e.status, f"{e.reason}: {request.method} {request.path}{hint}")
    except Exception:  # our own bug: still a JSON answer, and the details go to the log, not the caller
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error in the bridge (details in its log)", etype="server_error")


# ---- dashboard and description -------------------------------------------------------------------------------
async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())


# ---- devices --------------------------------------------------------------------------------------------------
async def _devices(request: web.Request) -> web.Response:
    fleet = request.app[_FLEET]
    return web.json_response({"devices": [fleet.devices[k].summary() for k in sorted(fleet.devices)]})


async def _device(request: web.Request) -> web.Response:
    return web.json_response(_known(request).detail())


async def _ask(request: web.Request) -> web.Response:
    device_id = _device_id(request)
    body = await _body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(400, "'text' must be a non-empty string: what to ask the device")
    if len(text) > MAX_ASK_TEXT:
        raise BadRequest(400, f"'text' is {len(text)} characters; the device takes at most {MAX_ASK_TEXT}")
    timeout = _timeout(body, ASK_TIMEOUT_S)
    reply = await _wait(request.app[_FLEET].ask(device_id, text, timeout), device_id, timeout, "reply")
    return web.json_response(_pick(reply, "id", "ok", "text", "path", "tier", "ms"))


async def _cmd(request: web.Request) -> web.Response:
    device_id = _device_id(request)
    body = await _body(request)
    tool, args = body.get("tool"), body.get("args", {})
    if not isinstance(tool, str) or not 1 <= len(tool) <= MAX_TOOL_NAME:
        raise BadRequest(400, f"'tool' must be a tool name (1-{MAX_TOOL_NAME} characters), e.g. \"gpio_read\"; "
                              "GET /api/devices/{id} lists the device's tools")
    if not isinstance(args, dict):
        raise BadRequest(400, "'args' must be a JSON object of the tool's arguments, e.g. {\"pin\": \"porch_light\"}")
    if len(json.dumps({"v": 1, "id": "cmd-000000000000", "tool": tool, "args": args})) > MAX_CMD_BYTES:
        raise BadRequest(413, f"command over {MAX_CMD_BYTES} bytes: the device would drop it unread")
    return web.json_response(await _run_cmd(request, device_id, tool, args, _timeout(body, CMD_TIMEOUT_S)))


def _listing(tool: str):
    async def handler(request: web.Request) -> web.Response:
        device_id = _device_id(request)
        return web.json_response(await _run_cmd(request, device_id, tool, {}, CMD_TIMEOUT_S))
    return handler


async def _run_cmd(request: web.Request, device_id: str, tool: str, args: dict, timeout: float) -> dict:
    res = await _wait(request.app[_FLEET].cmd(device_id, tool, args, timeout), device_id, timeout, "cmd/res")
    return {"tool": tool, **_pick(res, "id", "ok", "result")}


async def _set_pin(request: web.Request) -> web.Response:
    dev = _known(request)
    name = request.match_info["name"]
    pins = ((dev.manifest or {}).get("pins") or {})
    if not _PIN_NAME.match(name) or name not in pins:
        raise BadRequest(404, f"device {dev.id} has no pin '{name[:40]}'; pins: {', '.join(sorted(pins)) or 'none'}")
    mode = (pins[name] or {}).get("mode") if isinstance(pins[name], dict) else None
    body = await _body(request)
    state = body.get("state")
    if mode == "out":
        if not isinstance(state, str) or state.upper() not in ("ON", "OFF", "TOGGLE"):
            raise BadRequest(400, f"pin '{name}' is a switch: 'state' must be \"ON\", \"OFF\" or \"TOGGLE\"")
        payload = state.upper()
    elif mode == "pwm":
        if isinstance(state, bool) or not isinstance(state, (int, float)) or not 0 <= state <= 100:
            raise BadRequest(400, f"pin '{name}' is PWM: 'state' must be a number 0-100 (duty %)")
        payload = str(round(state))
    else:
        raise BadRequest(400, f"pin '{name}' is an input ({mode}); only outputs (out, pwm) can be set")
    value = await _wait(request.app[_FLEET].set_pin(dev.id, name, payload, PIN_TIMEOUT_S), dev.id,
                        PIN_TIMEOUT_S, f"state/{name}")
    return web.json_response({"name": name, "state": value})


async def _wait(coro, device_id: str, timeout: float, what: str):
    """Run a fleet request; its failures become the HTTP status a caller can act on."""
    try:
        return await coro
    except fl.UnknownDevice:
        raise BadRequest(404, f"no device '{device_id}' is known to this bridge; GET /api/devices lists them")
    except fl.DeviceOffline:
        raise BadRequest(409, f"device {device_id} is offline; it cannot answer until it reconnects")
    except fl.TooBusy as e:
        raise BadRequest(429, str(e))
    except asyncio.TimeoutError:
        raise BadRequest(504, f"no {what} from device {device_id} within {timeout:g} s")


# ---- usage, tiers, events, metrics ----------------------------------------------------------------------------
async def _usage(request: web.Request) -> web.Response:
    day = request.query.get("day") or time.strftime("%Y-%m-%d", time.gmtime())
    if not _DAY.match(day):
        raise BadRequest(400, f"'day' must be YYYY-MM-DD (UTC), got {day[:20]!r}")
    try:
        days = int(request.query.get("days", "1"))
    except ValueError:
        days = 0
    if not 1 <= days <= USAGE_DAYS_MAX:
        raise BadRequest(400, f"'days' must be an integer 1-{USAGE_DAYS_MAX}")
    costs = request.app[_COSTS]
    return web.json_response(await asyncio.to_thread(_read_usage, costs, day, days))


def _read_usage(costs, day: str, days: int) -> dict:
    costs.flush()  # what was recorded a moment ago is in the file
    db = sqlite3.connect(f"file:{costs.path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT device, tier, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) FROM usage "
                          "WHERE day = ? GROUP BY 1, 2 ORDER BY 1, 2", (day,)).fetchall()
        daily = db.execute("SELECT day, COUNT(*), SUM(cost_usd) FROM usage WHERE day <= ? "
                           "AND day > date(?, ?) GROUP BY 1 ORDER BY 1", (day, day, f"-{days} days")).fetchall()
    finally:
        db.close()
    by_device: dict[str, dict] = {}
    by_tier: dict[str, dict] = {}
    for device, tier, n, t_in, t_out, usd in rows:
        for table, key in ((by_device, device), (by_tier, tier)):
            agg = table.setdefault(key, {"requests": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0})
            agg["requests"] += n
            agg["tokens_in"] += t_in
            agg["tokens_out"] += t_out
            agg["cost_usd"] += usd
    for device, agg in by_device.items():
        agg["budget_usd"] = costs.cfg.budget_for(device) or None
    return {"day": day,
            "rows": [{"device": d, "tier": t, "requests": n, "tokens_in": i, "tokens_out": o, "cost_usd": usd}
                     for d, t, n, i, o, usd in rows],
            "by_device": by_device, "by_tier": by_tier,
            "total_usd": sum(a["cost_usd"] for a in by_tier.values()),
            "daily": [{"day": d, "requests": n, "cost_usd": usd} for d, n, usd in daily]}


async def _tiers(request: web.Request) -> web.Response:
    router = request.app[_ROUTER]
    return web.json_response({"tiers": router.snapshot(), "routes": router.config.routes})


async def _events(request: web.Request) -> web.StreamResponse:
    device = request.query.get("device") or None
    if device is not None and not protocol.is_device_id(device):
        raise BadRequest(400, f"'device' must be a device id: {protocol.DEVICE_ID_RULE}")
    return await serve_events(request, request.app[_HUB], device)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


# ---- input ----------------------------------------------------------------------------------------------------
def _device_id(request: web.Request) -> str:
    device_id = request.match_info["id"]
    if not protocol.is_device_id(device_id):
        raise BadRequest(400, f"{device_id[:40]!r} is not a device id: {protocol.DEVICE_ID_RULE}")
    return device_id


def _known(request: web.Request):
    device_id = _device_id(request)
    dev = request.app[_FLEET].devices.get(device_id)
    if dev is None:
        raise BadRequest(404, f"no device '{device_id}' is known to this bridge; GET /api/devices lists them")
    return dev


async def _body(request: web.Request) -> dict:
    try:
        body = json.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    except ValueError as e:
        raise BadRequest(400, f"request body is not valid JSON: {e}")
    except RecursionError:
        raise BadRequest(400, "request body is nested too deeply")
    if not isinstance(body, dict):
        raise BadRequest(400, "the request body must be a JSON object")
    return body


def _timeout(body: dict, default: float) -> float:
    t = body.get("timeout_s", default)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not MIN_TIMEOUT_S <= t <= MAX_TIMEOUT_S:
        raise BadRequest(400, f"'timeout_s' must be a number of seconds from {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g}")
    return float(t)


def _pick(msg: dict, *keys: str) -> dict:
    return {k: msg.get(k) for k in keys}
