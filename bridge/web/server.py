"""The app factory: one aiohttp app with every route (routes.py), its typed state (keys.py) and the middlewares
(auth.py: the token check; errors.py: JSON errors); start() serves it."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bridge.config import ConfigError
from bridge.cost import CostStore
from bridge.fleet import Fleet
from bridge.metrics import Metrics
from bridge.routing.router import Router
from bridge.updates import Updates
from bridge.web import keys
from bridge.web.auth import auth
from bridge.web.closing import on_shutdown
from bridge.web.errors import MAX_BODY_BYTES, json_errors
from bridge.web.events import EventHub
from bridge.web.routes import ROUTES

log = logging.getLogger("wisp.bridge.http")

# A connection with no request in progress is closed this long after it opened or after its last
# response: headers sent slowly or never, and idle keep-alive, cannot hold sockets (and file
# descriptors) for long. Counted from the connection's start, not reset by incoming bytes, so
# trickling a header a byte at a time does not keep it open either.
IDLE_TIMEOUT_S = 15.0


class _ConnectionLog(logging.LoggerAdapter):
    """aiohttp's log of the connections it serves. A request it cannot parse (a line over 8 KB, a broken header,
    an unknown method: the client's fault, answered 400 before any route) is one warning line, not an ERROR with a
    traceback: anyone who can reach the port could fill the log with those. Anything else keeps its traceback."""

    def exception(self, msg, *args, exc_info=True, **kwargs):
        # a body that does not decode comes back once more, as the cause of the error aiohttp's read of the rest of
        # the body raises after the answer (a 400, body.py)
        bad = exc_info if isinstance(exc_info, HttpProcessingError) else getattr(exc_info, "__cause__", None)
        if isinstance(bad, HttpProcessingError) and 400 <= bad.code < 500:
            log.warning("malformed HTTP request, answered %d: %.200s", bad.code, bad.message)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def make_app(*, token: str, router: Router, costs: CostStore, fleet: Fleet, hub: EventHub,
             metrics: Metrics, updates: Updates | None = None) -> web.Application:
    # auth first: a request without the token learns nothing, not even which paths exist
    app = web.Application(middlewares=[auth, json_errors], client_max_size=MAX_BODY_BYTES)
    app[keys.TOKEN], app[keys.ROUTER], app[keys.COSTS] = token, router, costs
    app[keys.FLEET], app[keys.HUB], app[keys.METRICS] = fleet, hub, metrics
    app[keys.UPDATES] = updates or Updates(None, None, "this bridge was started without update support")
    app[keys.CLOSING] = asyncio.Event()
    app.on_shutdown.append(on_shutdown)
    app.add_routes(ROUTES)
    return app


async def start(app: web.Application, host: str, port: int,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> tuple[web.AppRunner, str]:
    """Serve app on host:port (0: any free port); returns the runner (cleanup() stops it) and the base URL."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0,
                           keepalive_timeout=idle_timeout_s,
                           logger=_ConnectionLog(logging.getLogger("aiohttp.server"), {}))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:  # the port is taken, the address is not this host's: the operator's setting to fix
        await runner.cleanup()
        raise ConfigError(f"[http] cannot listen on {host}:{port} (host and port, or WISP_HTTP): "
                          f"{e.strerror or e}") from None
    url = f"http://{host}:{runner.addresses[0][1]}"
    log.info("HTTP server on %s (/v1, REST API, dashboard)", url)
    return runner, url
