"""What every path answers when something is wrong: an OpenAI-style JSON error body, never a bare 500."""
from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("wisp.bridge.http")

MAX_BODY_BYTES = 1024 * 1024  # of any request; aiohttp refuses bigger bodies (413)


class BadRequest(Exception):
    """Raised by a view: answered as `status` with the message, which says what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error(status: int, message: str, etype: str = "invalid_request_error", code: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": etype, "param": None, "code": code}},
                             status=status)


@web.middleware
async def json_errors(request: web.Request, handler):
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
