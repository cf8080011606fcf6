"""REST views of over-the-air updates (docs/ota.md, docs/api.md): start a rollout to one device or the fleet,
follow it, and read what each device reports about its last update. The rollout runs in bridge/updates.py."""
from __future__ import annotations

import re

from aiohttp import web

from bridge import protocol
from bridge.updates import Busy, Unavailable
from bridge.web.errors import BadRequest
from bridge.web.keys import FLEET, UPDATES
from bridge.web.rest import _body, _device_id, _known

_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){0,3}$")
_THEN = re.compile(r"^([0-9]{1,3})%$")
_UPDATE_FIELDS = ("version", "force", "health_s")  # what _start reads


async def rollout(request: web.Request) -> web.Response:
    """GET /api/ota: the current or last rollout."""
    return web.json_response({"rollout": request.app[UPDATES].snapshot()})


async def start_rollout(request: web.Request) -> web.Response:
    """POST /api/ota {devices | all, canary, then, max_failures, version, force, health_s}."""
    body = await _body(request, "devices", "all", "canary", "then", "max_failures", *_UPDATE_FIELDS)
    fleet = request.app[FLEET]
    if body.get("all") is True:
        ids = sorted(d for d, dev in fleet.devices.items() if dev.online)
    else:
        ids = body.get("devices")
        if not (isinstance(ids, list) and ids and all(isinstance(d, str) and protocol.is_device_id(d) for d in ids)):
            raise BadRequest(400, "'devices' must be a non-empty list of device ids, or pass \"all\": true")
        unknown = [d for d in ids if d not in fleet.devices]
        if unknown:
            raise BadRequest(404, f"unknown device(s): {', '.join(unknown)}; GET /api/devices lists them")
    if not ids:
        raise BadRequest(409, "no device is online")
    canary, then, max_failures = body.get("canary", 1), body.get("then", "25%"), body.get("max_failures", 0)
    if not _count(canary) or not _count(max_failures):
        raise BadRequest(400, "'canary' and 'max_failures' must be whole numbers from 0")
    if not ((_count(then) and then > 0) or (isinstance(then, str) and _THEN.match(then)
                                            and 0 < int(then[:-1]) <= 100)):
        raise BadRequest(400, "'then' must be a stage size: a count (4) or a percentage (\"25%\")")
    running = {d: fleet.devices[d].status.get("fw") for d in ids}  # those already on the version are left out
    return _start(request, ids, body, canary=canary, then=then, max_failures=max_failures, running=running)


async def device_update(request: web.Request) -> web.Response:
    """GET /api/devices/{id}/ota: what the device runs and reports, and this bridge's rollout of it."""
    dev = _known(request)
    report = request.app[UPDATES].snapshot()
    mine = (report or {}).get("devices", {}).get(dev.id)
    return web.json_response({"id": dev.id, "online": dev.online, "fw": dev.status.get("fw"), "ota": dev.ota,
                              "update": mine, "rollout_state": report["state"] if mine else None})


async def start_device_update(request: web.Request) -> web.Response:
    """POST /api/devices/{id}/ota {version, force, health_s}."""
    device_id = _device_id(request)
    _known(request)
    body = await _body(request, *_UPDATE_FIELDS)
    return _start(request, [device_id], body, canary=0, then=1, max_failures=0)


def _start(request, ids, body, **stages) -> web.Response:
    from tools import otabundle  # here, as bridge/updates.py: the build tools load when an update starts
    version, force, health_s = body.get("version"), body.get("force", False), body.get("health_s", otabundle.HEALTH_S)
    if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
        raise BadRequest(400, "'version' must be dotted numbers, e.g. \"0.2.0\" (default: the checkout's VERSION)")
    if not isinstance(force, bool):
        raise BadRequest(400, "'force' must be true or false (true allows a version older than the device's)")
    lo, hi = otabundle.HEALTH_RANGE_S
    if not _count(health_s) or not lo <= health_s <= hi:
        raise BadRequest(400, f"'health_s' must be {lo}-{hi} seconds")
    try:
        report = request.app[UPDATES].start(ids, version=version, force=force, health_s=health_s, **stages)
    except Unavailable as e:
        raise BadRequest(409, str(e)) from None
    except Busy as e:
        raise BadRequest(409, str(e)) from None
    return web.json_response({"rollout": report}, status=202)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
