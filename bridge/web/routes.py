"""Every path the bridge serves, in one table. A REST route added here is described in openapi.py
(tests/bridge/test_rest_api.py checks that both agree)."""
from __future__ import annotations

from aiohttp import web

from bridge.web import ota, rest, v1

ROUTES = [
    # OpenAI-compatible endpoint
    web.post("/v1/chat/completions", v1.chat),
    web.get("/v1/models", v1.models),
    web.get("/v1/models/{model}", v1.model),
    web.get("/v1/wisp/stats", v1.stats),
    # dashboard and API description (public)
    web.get("/", rest.index),
    web.get("/static/{name:.+}", rest.static_file),
    web.get("/api/openapi.json", rest.openapi),
    # REST API
    web.get("/api/devices", rest.devices),
    web.get("/api/devices/{id}", rest.device),
    web.post("/api/devices/{id}/ask", rest.ask),
    web.post("/api/devices/{id}/cmd", rest.cmd),
    web.post("/api/devices/{id}/pins/{name}", rest.set_pin),
    *(web.get(f"/api/devices/{{id}}/{what}", rest.listing(tool)) for what, tool in rest.LISTINGS.items()),
    web.get("/api/devices/{id}/ota", ota.device_update),
    web.post("/api/devices/{id}/ota", ota.start_device_update),
    web.get("/api/ota", ota.rollout),
    web.post("/api/ota", ota.start_rollout),
    web.get("/api/usage", rest.usage),
    web.get("/api/tiers", rest.tiers),
    web.get("/api/events", rest.events),
    web.get("/metrics", rest.metrics),
]
