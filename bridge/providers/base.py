"""What every provider shares: the event and error types, the SSE decoder, and the HTTP streaming loop with its
first-token and idle deadlines. A provider maps one wire format onto StreamEvents; nothing above it knows which.
"""
from __future__ import annotations

import asyncio
import email.utils
import html
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge import fastjson
from bridge.httpclient import ConnectTimeout, HttpClient, HttpError, Response

log = logging.getLogger("wisp.bridge.providers")

EXCERPT = 200  # chars of server text quoted in error messages: enough to diagnose, short enough to log
ERROR_BODY_MAX = 64 * 1024  # bytes of an error answer read to find its message; a longer one is cut there


_JSON = {"Content-Type": "application/json"}

class ProviderError(Exception):
    """kind: 'http' | 'timeout' | 'malformed' | 'cut' | 'connect'.

    message is human readable and never contains the API key; status is the HTTP status for 'http' errors."""

    def __init__(self, kind: str, message: str, status: int | None = None, retry_after_s: float | None = None,
                 code: str | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s  # a 429's Retry-After, in seconds
        self.code = code  # the error body's machine-readable code: OpenAI's 429 means two things (hedge.py)


@dataclass
class ToolCall:
    cid: str  # the provider's tool_call id, or "call_<n>" if the server omitted it
    name: str
    args: dict | None  # parsed JSON object; None when the arguments were not a JSON object
    raw_args: str  # concatenated argument string as received
    error: str | None = None  # why args is None (or the call has no name)


@dataclass
class StreamEvent:
    kind: str  # 'call' | 'text' | 'done'
    call: ToolCall | None = None
    text: str = ""
    finish_reason: str | None = None
    usage: dict | None = None  # always OpenAI-shaped: {"prompt_tokens": n, "completion_tokens": n}


class SSEDecoder:
    """Incremental Server-Sent-Events decoder: feed(bytes) -> list[str] of complete `data:` payloads.

    Lines are split on b"\\n" before decoding: 0x0A never occurs inside a multi-byte UTF-8 sequence, so a
    character split across network chunks simply waits in the buffer with the rest of its line.
    Lone-CR line endings (legal SSE, unused by any inference server) are not supported.
    An `error:` field, which SSE readers ignore, is how llama-server before its HTTP rewrite (late 2025)
    reported a failure mid-stream (`error: {"code":400,"message":...}` then `data: [DONE]`): it is handed
    on at once as the payload `{"error": ...}`, the form the other servers send, so its message is seen.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        head, sep, self._buf = (self._buf + chunk if self._buf else chunk).rpartition(b"\n")
        out: list[str] = []
        if sep:
            for raw in head.split(b"\n"):
                # inline, the lines every tier sends (payloads, then the blank line): one call less per line
                if raw.startswith(b"data: ") and not raw.endswith(b"\r"):
                    self._data.append(raw[6:].decode("utf-8", errors="replace"))
                elif not raw and self._data:
                    out.append("\n".join(self._data))
                    self._data = []
                else:
                    self._line(raw, out)
        return out

    def flush(self) -> list[str]:
        """End of stream. Lenient: dispatches an event lacking its final blank line (some servers do that)."""
        out: list[str] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, raw: bytes, out: list[str]) -> None:
        line = raw.decode("utf-8", errors="replace").removesuffix("\r")
        if not line:  # blank line dispatches the event
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(":"):  # comment / keep-alive
            return
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        elif name == "error":
            out.append(_error_payload(value.strip()))
        # event:, id:, retry: carry nothing we need (Anthropic repeats the event name inside its data)


def _error_payload(value: str) -> str:
    """An `error:` field's value as the in-band error payload `{"error": value}` (a JSON value, else text)."""
    try:
        fastjson.loads(value)
    except ValueError:
        return json.dumps({"error": value})
    return '{"error":' + value + "}"


class PayloadReader:
    """The SSE data payloads of one answer, a network read at a time: `await next()` gives the payloads that
    read completed (maybe none), None once the stream has ended. Two deadlines: the absolute first-token one
    until the first payload (keep-alive comments do not extend it), then the idle bound between reads.
    (A coroutine per read rather than an async generator per payload: each generator level cost about a
    microsecond per payload, on every tier chunk.) A cut connection is an error unless complete() says the
    answer was."""

    def __init__(self, provider: HttpStreamProvider, resp: Response, first_deadline: float,
                 complete: Callable[[], bool]):
        self._p, self._resp, self._complete = provider, resp, complete
        self._loop = asyncio.get_running_loop()
        self._decoder = SSEDecoder()
        self._got_data = False
        self._ended = False
        resp.deadline = first_deadline

    async def next(self) -> list[str] | None:
        if self._ended:
            return None
        p, resp = self._p, self._resp
        try:
            chunk = await resp.chunk()
        except TimeoutError as e:
            what = (f"stream idle for more than {p._idle_timeout_s}s" if self._got_data
                    else f"no first token within {p._first_token_timeout_s}s")
            raise p._fail("timeout", what) from e
        except HttpError as e:
            if self._complete():
                self._ended = True  # the answer was complete; only a trailer (usage, [DONE]) was lost
                return None
            raise p._fail("cut", f"connection lost mid-stream: {e}") from e
        if not chunk:
            self._ended = True
            return self._decoder.flush()
        payloads = self._decoder.feed(chunk)
        if payloads:
            self._got_data = True
        if self._got_data:
            resp.deadline = self._loop.time() + p._idle_timeout_s
        return payloads


def parse_args(raw: str) -> tuple[dict | None, str | None]:
    if not raw.strip():
        return {}, None  # some servers send "" (not "{}") for tools without parameters
    try:
        val = fastjson.loads_strict(raw)
    except ValueError as e:
        return None, f"arguments are not valid JSON: {e}"
    if not isinstance(val, dict):
        return None, f"arguments are not a JSON object (got {type(val).__name__})"
    return val, None


def retry_after(headers) -> float | None:
    """Seconds a 429 asks to wait: Retry-After (seconds or an HTTP date, RFC 9110) or OpenAI's retry-after-ms."""
    ms = headers.get("retry-after-ms")
    try:
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("Retry-After")
        if value is None:
            return None
        if value.strip().isdigit():
            return float(value)
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError, OverflowError):
        return None


def error_text(obj) -> str:
    """Best human-readable message from an OpenAI- or Anthropic-style error body (or anything else), with
    OpenAI's `param` (e.g. "tools[3].function.parameters"): the message alone often does not say where."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    param = err.get("param") if isinstance(err, dict) else None
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or json.dumps(err)
    text = " ".join(str(err).split())[:EXCERPT]
    return f"{text} (param: {param[:EXCERPT // 2]})" if isinstance(param, str) and param else text


_HTML_START = ("<!doctype html", "<html")
_HTML_UNSEEN = re.compile(r"(?is)<(head|script|style)\b.*?</\1\s*>")
_HTML_TAG = re.compile(r"(?s)<[^>]*>")
_HTML_TITLE = re.compile(r"(?is)<title\b[^>]*>(.*?)</title\s*>")


def html_words(text: str) -> str | None:
    """What an HTML page says, "title: the rest of its text" (a proxy's or web server's error page, reached by a
    URL that is not the API), or None when text is no HTML page."""
    if not text.lstrip()[:14].lower().startswith(_HTML_START):
        return None
    found = _HTML_TITLE.search(text)
    title = " ".join(html.unescape(found.group(1)).split()) if found else ""
    words = " ".join(html.unescape(_HTML_TAG.sub(" ", _HTML_UNSEEN.sub(" ", text))).split())
    words = words.removeprefix(title).lstrip()  # the heading most such pages repeat their title in
    return f"{title}: {words}" if title and words else title or words


def in_band_error(obj) -> bool:
    """Whether a JSON body or stream chunk is an error report: OpenAI's, llama-server's and Ollama's
    `{"error": ...}`, or vLLM's `{"object": "error", "message": ..., "code": 400}` (its ErrorResponse)."""
    return isinstance(obj, dict) and (bool(obj.get("error")) or obj.get("object") == "error")


def error_status(obj) -> int | None:
    """The HTTP status an error body carries: in `code` (llama-server and vLLM: 400 for a prompt over the
    context size), or in a `status_code` beside the error (Cerebras: its SDK raises a streamed error as the
    error of that status), so an error reported inside a 200 stream is judged as that status would be.
    OpenAI's codes are strings ("rate_limit_exceeded"): None."""
    err = obj.get("error", obj) if isinstance(obj, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    if not isinstance(code, int) and isinstance(obj, dict):
        code = obj.get("status_code")
    return code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else None


def error_code(obj) -> str | None:
    """The machine-readable code of an OpenAI-style error body ("insufficient_quota", ...), if it has one."""
    err = obj.get("error") if isinstance(obj, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, str) else None


def token_cap(options: dict, tier_cap: int | None) -> int | None:
    """The one output-token limit to send, taken out of a /v1 caller's options (max_completion_tokens, else the
    older max_tokens: both name the same limit) and the tier's `max_tokens` from wisp.toml.

    With both, the smaller wins: the tier's value is the operator's ceiling (cost, reply size), and a caller
    may ask for less but not for more. A value that is not an integer goes on as the caller sent it, so the
    provider's own 400 names it."""
    caller = options.pop("max_completion_tokens", None)
    older = options.pop("max_tokens", None)
    caller = older if caller is None else caller
    if caller is None:
        return tier_cap
    if tier_cap is None or not isinstance(caller, int) or isinstance(caller, bool):
        return caller
    return min(caller, tier_cap)


class HttpStreamProvider:
    """POST a JSON body, then yield the SSE `data:` payloads under two deadlines: an absolute one for the first
    payload, then an idle bound between network reads. Subclasses turn payloads into StreamEvents."""

    def __init__(self, http: HttpClient, url: str, model: str, api_key: str | None = None,
                 connect_timeout_s: float = 5.0, first_token_timeout_s: float = 30.0, idle_timeout_s: float = 30.0,
                 extra_body: dict | None = None, family: str = "openai", load_wait_s: float = 0.0):
        self._http = http
        self._family = family  # whose schema rules tools are translated to (schemas.py)
        self._url = url
        self._model = model
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._load_wait_s = load_wait_s
        self._extra_body = dict(extra_body or {})

    def _fail(self, kind: str, message: str, status: int | None = None,
              retry_after_s: float | None = None, code: str | None = None) -> ProviderError:
        # Servers sometimes echo the key back (e.g. "Incorrect API key provided: sk-..."); errors end up in logs.
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return ProviderError(kind, message, status, retry_after_s, code)

    async def _post(self, body: dict, headers: dict, first_deadline: float) -> Response:
        # compact JSON: the spaces of the default separators are ~10 % of a device round's request
        data, headers = fastjson.dumps(body), {**headers, **_JSON}
        try:
            if not self._load_wait_s:
                return await self._http.post(self._url, data, headers, self._connect_timeout_s, first_deadline)
            return await self._post_while_loading(data, headers, first_deadline)
        except ConnectTimeout as e:
            raise self._fail("connect", f"connect to {self._url} timed out after {self._connect_timeout_s}s") from e
        except HttpError as e:
            raise self._fail("connect", f"cannot reach {self._url}: {e}") from e
        except TimeoutError as e:
            raise self._fail("timeout", f"no first token within {self._first_token_timeout_s}s (no headers)") from e

    async def _post_while_loading(self, data: bytes, headers: dict, first_deadline: float) -> Response:
        """_post for a server that may be loading its model (load_wait_s): given up before the headers (the
        first-token deadline, a hedge that won, the budget over), the request is kept open in the background
        up to load_wait_s (HttpClient.keep_open), so the load completes for the next request."""
        loop = asyncio.get_running_loop()
        post = loop.create_task(self._http.post(self._url, data, headers, self._connect_timeout_s,
                                                max(first_deadline, loop.time() + self._load_wait_s)))
        try:
            async with asyncio.timeout_at(first_deadline):
                return await asyncio.shield(post)
        except BaseException:
            if post.done():
                if not post.cancelled() and post.exception() is None:
                    post.result().abort()  # the headers came just as the caller gave up
            elif self._http.keep_open(f"{self._url} {self._model}", post):
                log.info("model %s at %s: no answer yet; the request stays open up to %.0f s in the background "
                         "in case the server is loading the model", self._model, self._url, self._load_wait_s)
            else:
                post.cancel()
            raise

    async def _check_status(self, resp: Response) -> None:
        if resp.status // 100 != 2:
            excerpt, obj = await self._body_excerpt(resp)
            raise self._fail("http", f"HTTP {resp.status}: {excerpt}", resp.status,
                             retry_after(resp.headers) if resp.status == 429 else None, error_code(obj))
        if resp.content_type == "application/json":  # server ignored stream:true, or a 200 carrying an error
            excerpt, obj = await self._body_excerpt(resp)
            if in_band_error(obj):
                raise self._fail("http", f"expected an event stream, got JSON: {excerpt}",
                                 error_status(obj) or resp.status, code=error_code(obj))
            raise self._fail("malformed", f"expected an event stream, got JSON: {excerpt}", resp.status)
        if resp.content_type == "text/html":  # a web app that answers every path with its page (200)
            excerpt, _obj = await self._body_excerpt(resp)
            raise self._fail("malformed", f"expected an event stream, got {excerpt}", resp.status)

    def _reader(self, resp: Response, first_deadline: float, complete: Callable[[], bool]) -> PayloadReader:
        return PayloadReader(self, resp, first_deadline, complete)

    async def _body_excerpt(self, resp: Response) -> tuple[str, object]:
        """(short readable excerpt of the body, the body as parsed JSON: None when it is not JSON)."""
        try:
            resp.deadline = asyncio.get_running_loop().time() + self._idle_timeout_s
            text = (await resp.read(ERROR_BODY_MAX)).decode("utf-8", errors="replace")
        except (TimeoutError, HttpError):
            return "(error body unreadable)", None
        try:
            obj = fastjson.loads(text)
        except ValueError:
            page = html_words(text)
            if page is not None:
                return f"{error_text(page)} (a web page, not an API's answer: check that {self._url} is the " \
                       "server's API)", None
            return error_text(text) or "(empty body)", None
        return error_text(obj), obj

    def _json(self, payload: str) -> dict:
        try:
            obj = fastjson.loads(payload)
        except ValueError:
            raise self._fail("malformed", f"data is not JSON: {payload[:EXCERPT]!r}") from None
        if not isinstance(obj, dict):
            raise self._fail("malformed", f"data is not a JSON object: {payload[:EXCERPT]!r}")
        return obj
