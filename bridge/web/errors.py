"""What every path answers when something is wrong: an OpenAI-style JSON error body, never a bare 500."""
from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("wisp.bridge.http")

MAX_BODY_BYTES = 1024 * 1024  # of any request; aiohttp refuses bigger bodies (413)


class BadRequest(Exception):
    """Raised by a view: answered as `status` with the message, which says what to fix."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s  # a 429's or 503's Retry-After (RFC 9110, section 10.2.3)


def error(status: int, message: str, etype: str = "invalid_request_error", code: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": etype, "param": None, "code": code}},
                             status=status)


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except BadRequest as e:
        resp = error(e.status, str(e))
        if e.retry_after_s is not None:
            resp.headers["Retry-After"] = str(e.retry_after_s)
        if e.status == 408:  # the rest of the body may still come: this connection cannot carry another request
            resp.force_close()
        return resp
    except web.HTTPException as e:  # aiohttp's own 404/405/413: the same JSON shape as everything else
        if e.status < 400:
            raise
        hint = "; see /api/openapi.json" if e.status in (404, 405) else ""
        # aiohttp's own words when it has any beyond the status ("Unsupported version: 99" of a WebSocket handshake)
        if e.text and e.text != f"{e.status}: {e.reason}":
            hint = f" ({' '.join(e.text.split())[:200]})"
        resp = error(e.status, f"{e.reason}: {request.method} {request.path}{hint}")
        # keep the exception's own headers but for its text body's: a 405 must say which methods are allowed
        # (Allow, RFC 9110 section 15.5.6)
        resp.headers.extend((k, v) for k, v in e.headers.items()
                            if k.lower() not in ("content-type", "content-length"))
        return resp
    except Exception:  # our own bug: still a JSON answer, and the details go to the log, not the caller
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error in the bridge (details in its log)", etype="server_error")
