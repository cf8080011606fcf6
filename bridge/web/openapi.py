"""The OpenAPI 3 description of the bridge's REST API (served at GET /api/openapi.json). A route added to
routes.py is described here; tests/bridge/test_rest_api.py checks both agree.
"""
from __future__ import annotations

from functools import lru_cache

from bridge import protocol


def _obj(props: dict, required=()) -> dict:
    return {"type": "object", "properties": props, **({"required": list(required)} if required else {})}


_S, _I, _N, _B = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_NULLABLE_S = {"type": "string", "nullable": True}
_ERROR = _obj({"error": _obj({"message": _S, "type": _S, "param": _NULLABLE_S, "code": _NULLABLE_S},
                             ["message", "type"])}, ["error"])
_DEVICE_SUMMARY = _obj({"id": _S, "online": _B, "fw": _NULLABLE_S, "board": _NULLABLE_S,
                        "boots": {**_I, "nullable": True},
                        "last_seen": {"type": "number", "nullable": True, "description": "Unix time"},
                        "pins": _I, "manifest": _B, "ota": {"type": "object", "nullable": True,
                        "description": "the device's last over-the-air update: state, text, ver, off, size, fw"}})
_DEVICE_DETAIL = _obj({**_DEVICE_SUMMARY["properties"], "status": {"type": "object"},
                       "manifest": {"type": "object", "nullable": True},
                       "pins": {"type": "array", "items": {"$ref": "#/components/schemas/Pin"}},
                       "recent": {"type": "array", "items": {"type": "object"}}})
_PIN = _obj({"name": _S, "mode": {"type": "string", "description": "out, in, pwm, adc, or sensor"},
             "state": {"description": "\"ON\"/\"OFF\", a number, or a sensor reading object", "nullable": True}})
_NOTE = {"type": "string", "description": "only when the device refused the time this bridge signed with: which "
         "clock to check"}
_CMD_RESULT = _obj({"tool": _S, "id": _S, "ok": _B, "result": {"type": "string", "description": "the tool's "
                    "one-line result; errors start with 'Error:'"}, "note": _NOTE})
_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": protocol.DEVICE_ID_PATTERN}, "description": "device id"}


def _err(*codes: int) -> dict:
    text = {400: "bad input (the message says what to fix)", 401: "missing or wrong token",
            404: "unknown device or pin", 408: "the body did not arrive in time", 409: "device offline",
            413: "too large", 415: "a Content-Type no JSON comes as (send Content-Type: application/json)",
            426: "not a WebSocket upgrade", 429: "too many waiting requests",
            503: "too many event clients, or (device requests) the bridge is not connected to its broker",
            504: "the device did not answer in time"}
    out = {str(c): {"description": text[c], "content": {"application/json": {"schema": {"$ref":
           "#/components/schemas/Error"}}}} for c in codes}
    if 429 in codes:
        out["429"]["headers"] = {"Retry-After": {"description": "seconds to wait before asking again",
                                                 "schema": {"type": "integer"}}}
    return out


def _ok(schema: dict, description: str = "OK") -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _body(schema: dict) -> dict:
    # the server refuses fields it does not know (rest._body): a misspelt option is an error, not ignored
    return {"required": True, "content": {"application/json": {"schema": {**schema, "additionalProperties": False}}}}


_BODY_ERRORS = (400, 408, 413, 415)  # what any request with a body may get (bridge/web/body.py)


_ROLLOUT = _obj({"rollout": {"type": "object", "nullable": True, "description": "state (building, updating, done, "
                  "halted, failed), version, text, started, finished, stages (lists of ids), halted, devices: "
                  "{id: {state (waiting, updating, ok, failed, not offered, skipped), progress, text, before, after, "
                  "seconds}}"}})
_UPDATE_OPTIONS = {"version": {"type": "string", "description": "default: VERSION of the bridge's checkout"},
                   "force": {"type": "boolean", "default": False, "description": "allow an older version"},
                   "health_s": {"type": "integer", "minimum": 5, "maximum": 600, "default": 60}}


def _accepted(schema: dict) -> dict:
    return {"202": {"description": "started", "content": {"application/json": {"schema": schema}}}}


def _listing(what: str, tool: str) -> dict:
    return {"get": {"summary": f"The device's {what} (runs `{tool}` through cmd)", "parameters": [_ID],
                    "responses": {**_ok(_CMD_RESULT), **_err(400, 401, 404, 409, 429, 503, 504)}}}


@lru_cache(maxsize=1)
def spec() -> dict:
    timeout = {"type": "number", "minimum": 1, "maximum": 120}  # rest.MIN_TIMEOUT_S .. MAX_TIMEOUT_S
    return {
        "openapi": "3.0.3",
        "info": {"title": "wisp bridge API", "version": "1",
                 "description": "Devices, asks, direct commands, usage and tier health of a wisp bridge. "
                                "Every path except this description and the dashboard's files needs "
                                "`Authorization: Bearer <WISP_API_TOKEN>`. Live events: WebSocket "
                                "/api/events (token as ?access_token=). Prometheus: GET /metrics."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": _ERROR, "Pin": _PIN}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/devices": {"get": {
                "summary": "All devices this bridge has heard of",
                "responses": {**_ok(_obj({"devices": {"type": "array", "items": _DEVICE_SUMMARY},
                                           "broker_connected": _B})), **_err(401)}}},
            "/api/devices/{id}": {"get": {
                "summary": "One device: status, manifest, pins with their states, recent events",
                "parameters": [_ID],
                "responses": {**_ok(_DEVICE_DETAIL), **_err(400, 401, 404)}}},
            "/api/devices/{id}/ask": {"post": {
                "summary": "Ask the device in words and wait for its reply",
                "parameters": [_ID],
                "requestBody": _body(_obj({"text": {"type": "string", "minLength": 1,
                                                    "maxLength": protocol.MAX_ASK_TEXT},
                                           "timeout_s": {**timeout, "default": 40}}, ["text"])),
                "responses": {**_ok(_obj({"id": _S, "ok": _B, "text": _S, "path": _S, "tier": _NULLABLE_S,
                                          "ms": _I, "note": _NOTE})),
                              **_err(*_BODY_ERRORS, 401, 404, 409, 429, 503, 504)}}},
            "/api/devices/{id}/cmd": {"post": {
                "summary": "Run one tool on the device, no LLM, and wait for its result",
                "parameters": [_ID],
                "requestBody": _body(_obj({"tool": _S, "args": {"type": "object", "default": {}},
                                           "timeout_s": {**timeout, "default": 10}}, ["tool"])),
                "responses": {**_ok(_CMD_RESULT), **_err(*_BODY_ERRORS, 401, 404, 409, 429, 503, 504)}}},
            "/api/devices/{id}/pins/{name}": {"post": {
                "summary": "Switch an output (ON/OFF/TOGGLE) or set a PWM duty (0-100); returns the new state",
                "parameters": [_ID, {"name": "name", "in": "path", "required": True, "schema": _S}],
                "requestBody": _body(_obj({"state": {"oneOf": [{"type": "string", "enum": ["ON", "OFF", "TOGGLE"]},
                                                               {"type": "number", "minimum": 0, "maximum": 100}]}},
                                          ["state"])),
                "responses": {**_ok(_obj({"name": _S, "state": {}})),
                              **_err(*_BODY_ERRORS, 401, 404, 409, 429, 503, 504)}}},
            "/api/devices/{id}/schedules": _listing("schedules", "schedule_list"),
            "/api/devices/{id}/routines": _listing("routines", "routine_list"),
            "/api/devices/{id}/memory": _listing("remembered facts", "memory_list"),
            "/api/devices/{id}/ota": {
                "get": {"summary": "The device's firmware, its last update as it reports it, and this bridge's "
                                   "rollout of it", "parameters": [_ID],
                        "responses": {**_ok(_obj({"id": _S, "online": _B, "fw": _NULLABLE_S,
                                                  "ota": {"type": "object", "nullable": True},
                                                  "update": {"type": "object", "nullable": True},
                                                  "rollout_state": _NULLABLE_S})), **_err(400, 401, 404)}},
                "post": {"summary": "Update the device over the air (docs/ota.md); follow it with GET",
                         "parameters": [_ID], "requestBody": _body(_obj(_UPDATE_OPTIONS)),
                         "responses": {**_accepted(_ROLLOUT), **_err(*_BODY_ERRORS, 401, 404, 409)}}},
            "/api/ota": {
                "get": {"summary": "The current or last over-the-air rollout",
                        "responses": {**_ok(_ROLLOUT), **_err(401)}},
                "post": {"summary": "Update devices over the air in stages: canary, then batches; a stage with more "
                                    "than max_failures failures stops the rollout",
                         "requestBody": _body(_obj({"devices": {"type": "array", "items": _S}, "all": _B,
                                                    "canary": {"type": "integer", "minimum": 0, "default": 1},
                                                    "then": {"description": "a count, or a percentage like \"25%\"",
                                                             "default": "25%"},
                                                    "max_failures": {"type": "integer", "minimum": 0, "default": 0},
                                                    **_UPDATE_OPTIONS})),
                         "responses": {**_accepted(_ROLLOUT), **_err(*_BODY_ERRORS, 401, 404, 409)}}},
            "/api/usage": {"get": {
                "summary": "Tokens and cost per device and tier for one UTC day, and daily totals",
                "parameters": [{"name": "day", "in": "query", "schema": {"type": "string", "format": "date"}},
                               {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                          "maximum": 31, "default": 1}}],
                "responses": {**_ok(_obj({"day": _S, "rows": {"type": "array", "items": {"type": "object"}},
                                          "by_device": {"type": "object"}, "by_tier": {"type": "object"},
                                          "total_usd": _N, "daily": {"type": "array", "items": {"type": "object"}}})),
                              **_err(400, 401)}}},
            "/api/tiers": {"get": {
                "summary": "Live tier statistics (time to first output, tokens/s, error rate), breakers, routes",
                "responses": {**_ok(_obj({"tiers": {"type": "object"}, "routes": {"type": "object"}})),
                              **_err(401)}}},
            "/api/events": {"get": {
                "summary": "WebSocket: live device events, asks, replies, command results and tier decisions",
                "parameters": [{"name": "device", "in": "query", "schema": _S},
                               {"name": "access_token", "in": "query", "schema": _S}],
                "responses": {"101": {"description": "switching to WebSocket"},
                              **_err(400, 401, 426, 503)}}},
            "/metrics": {"get": {"summary": "Prometheus text exposition",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": _S}}},
                                               **_err(401)}}},
        },
    }
