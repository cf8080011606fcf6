"""Reading a JSON request body, the same way on every path (REST and /v1): what is refused here gets a 4xx that
says what to fix, and nothing that passes can fail later when the bridge re-encodes it for a device (MQTT) or a
tier (HTTP)."""
from __future__ import annotations

import asyncio
import json

from aiohttp import hdrs, web

from bridge import fastjson
from bridge.web.errors import MAX_BODY_BYTES, BadRequest

# The whole body must arrive within this. aiohttp bounds the time to send headers (server.IDLE_TIMEOUT_S) but
# not the body: a client that announces a Content-Length and then stalls would hold its handler and socket
# for as long as it stays connected.
BODY_TIMEOUT_S = 30.0


# Labels a JSON body arrives with from everyday clients: `curl -d` says form data and many scripts and
# automation tools say text/plain. Their bodies are read as JSON (and refused if they are not); a type no
# JSON comes as (multipart form data, octet-stream, an image) is a 415.
_ALSO_READ_AS_JSON = ("application/x-www-form-urlencoded", "text/plain")


def is_json_type(request: web.Request) -> bool:
    """No Content-Type at all is taken as JSON (there is nothing else it could be); one that is declared must
    be application/json, a +json type (RFC 6839) or one of _ALSO_READ_AS_JSON."""
    if hdrs.CONTENT_TYPE not in request.headers:
        return True
    ctype = request.content_type  # lower-cased, parameters such as charset removed
    return (ctype == "application/json" or ctype in _ALSO_READ_AS_JSON
            or (ctype.startswith("application/") and ctype.endswith("+json")))


async def read_json(request: web.Request) -> object:
    if not is_json_type(request):
        # 415, not a confusing "not valid JSON": e.g. a file sent with `curl -F`
        raise BadRequest(415, f"the body is {request.content_type}: send JSON with "
                              "'Content-Type: application/json'")
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            raw = await request.read()
    except TimeoutError:
        raise BadRequest(408, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, f"request body too large (limit {MAX_BODY_BYTES} bytes)") from None
    except web.RequestPayloadError as e:  # Content-Encoding gzip on bytes that are not, a broken chunked body
        why = getattr(e.__cause__, "message", None) or str(e)
        raise BadRequest(400, f"the request body cannot be read: {why}") from None
    try:
        body = fastjson.loads_strict(raw)
        # A lone UTF-16 surrogate ("\ud800") is valid JSON syntax but no character: it cannot be encoded
        # as UTF-8 for the device or the tier, and would fail there as an internal error.
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest(400, "request body has a lone UTF-16 surrogate (\\ud800-\\udfff) in a string; "
                              "it is not a character") from None
    except ValueError as e:  # NaN, Infinity, 1e400 and nesting too deep to read, too
        raise BadRequest(400, f"request body is not valid JSON: {e}") from None
    return body

