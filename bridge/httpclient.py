"""The HTTP/1.1 client of the tier calls: a POST whose answer is read as it streams, over keep-alive connections
(one pool per origin), plain or TLS. Only what the inference APIs use: Content-Length and chunked bodies, a body
read to the connection's end, 1xx answers skipped, gzip/deflate undone should a server compress unasked.

Why not aiohttp's client: at hundreds of requests a second its per-request machinery (request and response
objects, multidicts, URL objects, timers per read) was the largest share of the bridge's CPU after the model's
answer itself (bench/fleet.py). aiohttp still serves the bridge's own HTTP API.
The answer and its connection are in bridge/httpanswer.py.
"""
from __future__ import annotations

import asyncio
import ssl
from functools import partial
from urllib.parse import urlsplit

from bridge.httpanswer import Connection, Cut, Headers, HttpError, Response

__all__ = ["ConnectTimeout", "Cut", "Headers", "HttpClient", "HttpError", "Response"]

MAX_HEAD = 64 * 1024  # status line and headers: far beyond any provider's, small enough to refuse garbage
MAX_IDLE_PER_ORIGIN = 64  # kept-alive connections waiting for the next request, per scheme://host:port
IDLE_KEEP_S = 15.0  # an idle connection older than this is closed rather than reused (servers close at 5-60 s)


class ConnectTimeout(HttpError):
    pass


class _Origin:
    __slots__ = ("scheme", "host", "port", "path", "host_header", "tls")

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"not an http(s) URL: {url!r}")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.tls = parts.scheme == "https"
        default = 443 if self.tls else 80
        self.port = parts.port or default
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default else f"{host}:{self.port}"


class HttpClient:
    """Keep-alive connection pools per origin. One per bridge process; close() at shutdown."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self._ssl = ssl_context
        self._idle: dict[tuple, list[Connection]] = {}
        self._origins: dict[str, _Origin] = {}
        self._kept: dict[str, asyncio.Task] = {}  # keep_open(): requests given up, still waiting for headers
        self._closed = False

    def _origin(self, url: str) -> _Origin:
        o = self._origins.get(url)
        if o is None:
            o = self._origins[url] = _Origin(url)
        return o

    async def post(self, url: str, body: bytes, headers: dict, connect_timeout_s: float,
                   deadline: float | None = None) -> Response:
        """Send the request and read the answer's status and headers. Raises HttpError, ConnectTimeout, and
        TimeoutError when the headers have not come by `deadline` (loop time)."""
        o = self._origin(url)
        key = (o.scheme, o.host, o.port)
        head = [f"POST {o.path} HTTP/1.1\r\nHost: {o.host_header}\r\nContent-Length: {len(body)}\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value:  # would end the header early: a broken key or setting, not sent
                raise HttpError(f"header {name} holds a line break")
            head.append(f"{name}: {value}\r\n")
        try:
            request = "".join(head).encode("latin-1") + b"\r\n" + body
        except UnicodeEncodeError:
            raise HttpError("a header holds characters HTTP/1.1 cannot carry") from None
        while True:
            conn = self._idle_connection(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(o, connect_timeout_s, deadline)
            sent_at = conn.received
            conn.transport.write(request)
            try:
                return await self._answer(key, conn, deadline)
            except HttpError:
                # A kept-alive connection the server closed just as it was reused, without a byte of answer:
                # it closed an idle connection, so asking again on a new one cannot run the request twice
                # (browsers do the same).
                unanswered = reused and conn.eof and conn.received == sent_at
                conn.close()
                if unanswered:
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    def keep_open(self, key: str, post: asyncio.Task) -> bool:
        """Let a request its caller gave up on before the headers (a post() task) wait on in the background,
        at most one per `key`; its answer, if one comes, is closed unread. Returns False when one already
        waits (the caller cancels `post`). Why: a server that loads its model on a request aborts the load
        when that request's client goes (Ollama), so every later request would start it over."""
        if self._closed or key in self._kept:
            return False
        self._kept[key] = post
        post.add_done_callback(partial(self._kept_done, key))
        return True

    def _kept_done(self, key: str, post: asyncio.Task) -> None:
        self._kept.pop(key, None)
        if not post.cancelled() and post.exception() is None:  # exception(): a late failure, retrieved
            post.result().abort()

    def _idle_connection(self, key) -> Connection | None:
        pool = self._idle.get(key)
        while pool:
            conn = pool.pop()
            # bytes on an idle connection answer nothing we asked: it is not used again
            if conn.usable and not conn.buf and conn.loop.time() - conn.idle_since < IDLE_KEEP_S:
                return conn
            conn.close()
        return None

    def _put_back(self, key, conn: Connection) -> None:
        pool = self._idle.setdefault(key, [])
        if self._closed or len(pool) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        pool.append(conn)

    async def _connect(self, o: _Origin, timeout_s: float, deadline: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if o.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        give_up = loop.time() + timeout_s
        try:
            async with asyncio.timeout_at(give_up if deadline is None else min(give_up, deadline)):
                _, conn = await loop.create_connection(lambda: Connection(loop), o.host, o.port, ssl=tls,
                                                       server_hostname=o.host if tls else None)
        except TimeoutError:
            if deadline is not None and deadline < give_up:
                raise  # the caller's deadline, not the connect timeout
            raise ConnectTimeout(f"connect to {o.host}:{o.port} timed out after {timeout_s}s") from None
        except (OSError, ssl.SSLError) as e:
            raise HttpError(f"cannot connect to {o.host}:{o.port}: {e}") from None
        return conn

    async def _answer(self, key, conn: Connection, deadline: float | None) -> Response:
        rang = []  # the deadline's timer has rung (it may ring a hair before loop.time() reaches it)

        def ring():
            rang.append(True)
            conn._wake()
        timer = None if deadline is None else conn.loop.call_at(deadline, ring)
        try:
            return await self._head(key, conn, deadline, rang)
        finally:
            if timer is not None:
                timer.cancel()

    async def _head(self, key, conn: Connection, deadline: float | None, rang: list) -> Response:
        while True:
            buf = conn.buf
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > MAX_HEAD:
                    raise HttpError("response head too long")
                if conn.eof:
                    raise HttpError(f"connection closed before an answer: {conn.error or 'by the server'}")
                if rang or (deadline is not None and conn.loop.time() >= deadline):
                    raise TimeoutError
                conn.waiter = fut = conn.loop.create_future()
                await fut
                end = buf.find(b"\r\n\r\n")
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            version, _, rest = lines[0].partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise HttpError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
            status = int(code)
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real answer follows
            headers = Headers()
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise HttpError(f"malformed header line {line[:80]!r}")
                headers[name.strip().lower()] = value.strip()
            return Response(partial(self._put_back, key), conn, status, reason, headers,
                            no_body=status in (204, 304))

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for post in list(self._kept.values()):
            post.cancel()
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
