"""Typed state of the bridge's aiohttp app: what the views read from request.app."""
from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.cost import CostStore
from bridge.fleet import Fleet
from bridge.metrics import Metrics
from bridge.routing.router import Router
from bridge.updates import Updates
from bridge.web.events import EventHub

ROUTER = web.AppKey("router", Router)
COSTS = web.AppKey("costs", CostStore)
FLEET = web.AppKey("fleet", Fleet)
HUB = web.AppKey("hub", EventHub)
METRICS = web.AppKey("metrics", Metrics)
UPDATES = web.AppKey("updates", Updates)  # over-the-air rollouts started from the API
TOKEN = web.AppKey("token", str)  # the bearer token every non-public path needs
CLOSING = web.AppKey("closing", asyncio.Event)  # set when the server begins to stop (web/closing.py)
