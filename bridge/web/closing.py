"""A server that stops answers every request still waiting (a device's reply, a tier's stream, the event stream)
with words that say so, instead of cutting its connection: a client can tell a restart from a network fault."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web

from bridge.web.keys import CLOSING, HUB

SHUTTING_DOWN = "the bridge is shutting down; ask again in a moment"
STOPPING = "the bridge is shutting down"  # the event stream's last word: there is nothing to ask again


class ShuttingDown(Exception):
    """The server began to stop before the awaited answer came."""


async def on_shutdown(app: web.Application) -> None:
    """aiohttp calls this once the server stops listening, and then gives the handlers still running its
    shutdown_timeout to finish: they end with an answer in that time (web/server.py)."""
    app[CLOSING].set()
    if app[HUB] is not None:
        app[HUB].close(STOPPING)


async def unless_closing(request: web.Request, awaitable: Awaitable):
    """awaitable's result, or ShuttingDown (the awaitable cancelled) once the server begins to stop."""
    work = asyncio.ensure_future(awaitable)
    closing = asyncio.ensure_future(request.app[CLOSING].wait())
    try:
        await asyncio.wait({work, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
        stopped = not work.done()
        if stopped:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)  # its own cleanup (a tier request closed) runs first
    if stopped:
        raise ShuttingDown
    return work.result()
