"""The bearer-token check in front of every path but the dashboard's own files and the API description."""
from __future__ import annotations

import hmac

from aiohttp import web

from bridge.web.errors import error
from bridge.web.keys import TOKEN


def is_public(request: web.Request) -> bool:
    """The dashboard's files carry no data (it asks for the token itself); the API description is public too."""
    return request.method in ("GET", "HEAD") and (
        request.path in ("/", "/api/openapi.json") or request.path.startswith("/static/"))


@web.middleware
async def auth(request: web.Request, handler):
    if is_public(request):
        return await handler(request)
    given = request.headers.get("Authorization", "")
    if not given and request.headers.get("Upgrade", "").lower() == "websocket":
        # Browsers cannot set headers on a WebSocket: there the token may come as ?access_token=
        given = "Bearer " + request.query.get("access_token", "")
    scheme, _, token = given.strip().partition(" ")
    # the scheme is case-insensitive (RFC 7235): clients send "bearer" too. aiohttp decodes header bytes that
    # are not UTF-8 as surrogates: surrogateescape gives those bytes back (a plain encode() would raise).
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"),
                                                             request.app[TOKEN].encode()):
        resp = error(401, "missing or wrong API token: send 'Authorization: Bearer <WISP_API_TOKEN>'",
                     code="invalid_api_key")
        # a 401 must name the scheme it wants (RFC 9110 section 11.6.1; Bearer: RFC 6750 section 3)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="wisp"'
        return resp
    return await handler(request)
