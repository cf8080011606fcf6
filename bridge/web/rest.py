"""The REST API's views: devices, ask, cmd, pins, listings, usage, tiers, events, /metrics and the dashboard's
page (routes.py maps paths to them; openapi.py describes them). Devices are reached through the bridge's MQTT
link: ask and cmd wait, bounded, for the answer with their id. Bad input gets a 4xx JSON error that says what to
fix.
"""
from __future__ import annotations

import asyncio
import datetime
import re
import time
from pathlib import Path

from aiohttp import web

from bridge import fleet as fl
from bridge import protocol
from bridge.metrics import CONTENT_TYPE
from bridge.web.body import read_json
from bridge.web.closing import ShuttingDown, unless_closing
from bridge.web.errors import BadRequest
from bridge.web.events import serve_events
from bridge.web.keys import COSTS, FLEET, HUB, METRICS, ROUTER
from bridge.web.openapi import spec

STATIC_DIR = Path(__file__).parent / "static"
ASK_TIMEOUT_S = 40.0  # default wait for a reply: the device's own round timeout (30 s) plus margin
CMD_TIMEOUT_S = 10.0  # a direct command runs one tool, no LLM
PIN_TIMEOUT_S = 5.0  # set/<pin> -> the state the device publishes back
MAX_TIMEOUT_S = 120.0  # longest wait a caller may ask for
MIN_TIMEOUT_S = 1.0    # shortest: less is no real wait for a device on any network
BUSY_RETRY_AFTER_S = 1  # a 429 when too many requests wait for devices: answers free a slot every moment
MAX_ASK_TEXT = protocol.MAX_ASK_TEXT
MAX_TOOL_NAME = 64
USAGE_DAYS_MAX = 31
_PIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fullmatch, ASCII digits only (\d takes any script's)
# Tools the read-only listing endpoints run on the device.
LISTINGS = {"schedules": "schedule_list", "routines": "routine_list", "memory": "memory_list"}
_MORE = re.compile(r"; more: skip=([0-9]+)$")  # the end of a page of a device's list
_CLOCK_REFUSAL = "'ts' must be the current Unix time"  # a signed message dated off the device's clock

# Pages one listing follows. Each page holds at least one item, and two when both are under ~90 characters: a device's
# 4,096 bytes of facts fill ~45 pages at worst, its 16 jobs and 16 routines 16.
MAX_LIST_PAGES = 64


# ---- dashboard and description -------------------------------------------------------------------------------
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    """A file of the dashboard. A missing one raises, so it gets the JSON 404 every other path gives: aiohttp's
    own static route answered it with an empty octet-stream body."""
    root = STATIC_DIR.resolve()
    try:
        path = (root / request.match_info["name"]).resolve()
        found = root in path.parents and path.is_file()
    except (OSError, ValueError):  # a name no file can have: a NUL byte, over the file system's 255 bytes
        found = False
    if not found:
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())


# ---- devices --------------------------------------------------------------------------------------------------
async def devices(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    # without its broker the bridge hears no device: their states are the last it saw, and nothing can be sent
    return web.json_response({"devices": [fleet.devices[k].summary() for k in sorted(fleet.devices)],
                              "broker_connected": fleet.broker_connected()})


async def device(request: web.Request) -> web.Response:
    return web.json_response(_known(request).detail())


async def ask(request: web.Request) -> web.Response:
    device_id = _device_id(request)
    body = await _body(request, "text", "timeout_s")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(400, "'text' must be a non-empty string: what to ask the device")
    if len(text) > MAX_ASK_TEXT:
        raise BadRequest(400, f"'text' is {len(text)} characters; the device takes at most {MAX_ASK_TEXT}")
    timeout = _timeout(body, ASK_TIMEOUT_S)
    reply = await _wait(request, request.app[FLEET].ask(device_id, text, timeout), device_id, timeout, "reply")
    return web.json_response(_noted(_pick(reply, "id", "ok", "text", "path", "tier", "ms"), reply.get("text")))


async def cmd(request: web.Request) -> web.Response:
    device_id = _device_id(request)
    body = await _body(request, "tool", "args", "timeout_s")
    tool, args = body.get("tool"), body.get("args", {})
    if not isinstance(tool, str) or not 1 <= len(tool) <= MAX_TOOL_NAME:
        raise BadRequest(400, f"'tool' must be a tool name (1-{MAX_TOOL_NAME} characters), e.g. \"gpio_read\"; "
                              "GET /api/devices/{id} lists the device's tools")
    if not isinstance(args, dict):
        raise BadRequest(400, "'args' must be a JSON object of the tool's arguments, e.g. {\"pin\": \"porch_light\"}")
    return web.json_response(await _run_cmd(request, device_id, tool, args, _timeout(body, CMD_TIMEOUT_S)))


def listing(tool: str):
    async def handler(request: web.Request) -> web.Response:
        device_id = _device_id(request)
        res = await _run_cmd(request, device_id, tool, {}, CMD_TIMEOUT_S, read=True)
        # A tool result is one short line, so a device lists a long schedule in pages, each ending with
        # the skip that gets the next (firmware/wisp/tools/__init__.py, page): the listing shows them all.
        for _ in range(MAX_LIST_PAGES):
            more = _MORE.search(res["result"]) if res["ok"] and isinstance(res["result"], str) else None
            if more is None:
                break
            page = await _run_cmd(request, device_id, tool, {"skip": int(more.group(1))}, CMD_TIMEOUT_S, read=True)
            if not page["ok"] or not isinstance(page["result"], str):
                break  # keep what came: the first pages, still ending in how to get the rest
            res["result"] = res["result"][:more.start()] + "; " + page["result"]
        return web.json_response(res)
    return handler


async def _run_cmd(request: web.Request, device_id: str, tool: str, args: dict, timeout: float,
                   read: bool = False) -> dict:
    res = await _wait(request, request.app[FLEET].cmd(device_id, tool, args, timeout, read), device_id, timeout,
                      "cmd/res")
    return _noted({"tool": tool, **_pick(res, "id", "ok", "result")}, res.get("result"))


def _clock_note(said) -> str | None:
    """What to check when the device refused what this bridge signed as dated off its clock (the device's
    words, firmware/wisp/command.py fresh): the caller never sent that time, this bridge's clock did."""
    if not (isinstance(said, str) and _CLOCK_REFUSAL in said):
        return None
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f"the device refused the time this bridge signed with ({now}): this bridge's clock and the "
            "device's disagree by more than the device allows; check this bridge's clock first "
            "(`timedatectl set-ntp true`), or the device's if it is the one that is wrong")


def _noted(answer: dict, said) -> dict:
    note = _clock_note(said)
    return {**answer, "note": note} if note else answer


async def set_pin(request: web.Request) -> web.Response:
    dev = _known(request)
    name = request.match_info["name"]
    pins = ((dev.manifest or {}).get("pins") or {})
    if not _PIN_NAME.match(name) or name not in pins:
        raise BadRequest(404, f"device {dev.id} has no pin '{name[:40]}'; pins: {', '.join(sorted(pins)) or 'none'}")
    mode = (pins[name] or {}).get("mode") if isinstance(pins[name], dict) else None
    body = await _body(request, "state")
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
    value = await _wait(request, request.app[FLEET].set_pin(dev.id, name, payload, PIN_TIMEOUT_S), dev.id,
                        PIN_TIMEOUT_S, f"state/{name}")
    return web.json_response({"name": name, "state": value})


async def _wait(request: web.Request, coro, device_id: str, timeout: float, what: str):
    """Run a fleet request; its failures become the HTTP status a caller can act on."""
    try:
        return await unless_closing(request, coro)
    except ShuttingDown:  # what was sent may still run on the device: only its answer is not awaited
        raise BadRequest(503, f"the bridge is shutting down: no {what} from device {device_id} awaited (what was "
                         "sent may still run there); ask again in a moment") from None
    except fl.UnknownDevice:
        raise BadRequest(404, f"no device '{device_id}' is known to this bridge; GET /api/devices lists them") from None
    except fl.NoBroker:
        raise BadRequest(503, f"this bridge is not connected to its broker: nothing was sent to device {device_id}; "
                         "try again once it is (the bridge's log says why)") from None
    except fl.WentOffline:
        raise BadRequest(409, f"device {device_id} went offline before it answered; what it was sent may still run if "
                         "it comes back without a restart") from None
    except fl.DeviceOffline:
        raise BadRequest(409, f"device {device_id} is offline; it cannot answer until it reconnects") from None
    except fl.TooBig as e:
        raise BadRequest(413, str(e)) from None
    except fl.TooBusy as e:  # the waiting requests end within their timeouts: one leaves room soon
        raise BadRequest(429, str(e), retry_after_s=BUSY_RETRY_AFTER_S) from None
    except fl.PinRefused as e:
        note = _clock_note(str(e))
        raise BadRequest(409, f"device {device_id} refused: {e}" + (f" ({note})" if note else "")) from None
    except TimeoutError:
        raise BadRequest(504, f"no {what} from device {device_id} within {timeout:g} s") from None


# ---- usage, tiers, events, metrics ----------------------------------------------------------------------------
async def usage(request: web.Request) -> web.Response:
    day = request.query.get("day") or time.strftime("%Y-%m-%d", time.gmtime())
    if not _is_day(day):
        raise BadRequest(400, f"'day' must be a date YYYY-MM-DD (UTC), got {day[:20]!r}")
    try:
        days = int(request.query.get("days", "1"))
    except ValueError:
        days = 0
    if not 1 <= days <= USAGE_DAYS_MAX:
        raise BadRequest(400, f"'days' must be an integer 1-{USAGE_DAYS_MAX}")
    if datetime.date.fromisoformat(day).toordinal() < days:  # the window would start before 0001-01-01
        raise BadRequest(400, f"'days' reaches back before 0001-01-01 from {day}")
    costs = request.app[COSTS]
    return web.json_response(await asyncio.to_thread(costs.usage_report, day, days))


async def tiers(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    return web.json_response({"tiers": router.snapshot(), "routes": router.config.routes})


async def events(request: web.Request) -> web.StreamResponse:
    device = request.query.get("device") or None
    if device is not None and not protocol.is_device_id(device):
        raise BadRequest(400, f"'device' must be a device id: {protocol.DEVICE_ID_RULE}")
    return await serve_events(request, request.app[HUB], device)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


# ---- input ----------------------------------------------------------------------------------------------------
def _device_id(request: web.Request) -> str:
    device_id = request.match_info["id"]
    if not protocol.is_device_id(device_id):
        raise BadRequest(400, f"{device_id[:40]!r} is not a device id: {protocol.DEVICE_ID_RULE}")
    return device_id


def _known(request: web.Request):
    device_id = _device_id(request)
    dev = request.app[FLEET].devices.get(device_id)
    if dev is None:
        raise BadRequest(404, f"no device '{device_id}' is known to this bridge; GET /api/devices lists them")
    return dev


async def _body(request: web.Request, *fields: str) -> dict:
    """The JSON object of the request, which may hold only `fields`."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest(400, "the request body must be a JSON object")
    # A misspelt optional field ("timout_s") would otherwise be ignored without a word, and its default used
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        raise BadRequest(400, f"unknown field(s): {', '.join(k[:40] for k in unknown[:10])}; "
                              f"this endpoint takes: {', '.join(fields) or 'none'}")
    return body


def _is_day(text: str) -> bool:
    if not _DAY.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)  # 2024-13-45 has the shape but is no day
    except ValueError:
        return False
    return True


def _timeout(body: dict, default: float) -> float:
    t = body.get("timeout_s", default)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not MIN_TIMEOUT_S <= t <= MAX_TIMEOUT_S:
        raise BadRequest(400, f"'timeout_s' must be a number of seconds from {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g}")
    return float(t)


def _pick(msg: dict, *keys: str) -> dict:
    return {k: msg.get(k) for k in keys}
