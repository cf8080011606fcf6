"""The HTTP/1.1 client of the tier calls: a POST whose answer is read as it streams, over keep-alive connections
(one pool per origin), plain or TLS. Only what the inference APIs use: Content-Length and chunked bodies, a body
read to the connection's end, 1xx answers skipped, gzip/deflate undone should a server compress unasked.

Why not aiohttp's client: at hundreds of requests a second its per-request machinery (request and response
objects, multidicts, URL objects, timers per read) was the largest share of the bridge's CPU after the model's
answer itself (bench/fleet.py). aiohttp still serves the bridge's own HTTP API.

Deadlines are loop times set on the response (`deadline`): a read still waiting when it passes raises
TimeoutError. One timer per response re-arms itself when the deadline moved, instead of one per read.
"""
from __future__ import annotations

import asyncio
import ssl
import zlib
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # status line and headers: far beyond any provider's, small enough to refuse garbage
MAX_IDLE_PER_ORIGIN = 64  # kept-alive connections waiting for the next request, per scheme://host:port
IDLE_KEEP_S = 15.0  # an idle connection older than this is closed rather than reused (servers close at 5-60 s)
PAUSE_AT = 256 * 1024  # unread body bytes at which the socket stops being read until the reader catches up
DRAIN_S = 1.0  # after a reader stopped early: how long the rest of the body may take before the connection closes
DRAIN_MAX = 64 * 1024  # ...and how many more body bytes it may carry


class HttpError(Exception):
    """The connection failed or the server's answer is not HTTP/1.1: refused, reset, cut, malformed."""


class ConnectTimeout(HttpError):
    pass


class Cut(HttpError):
    """The connection ended inside the answer's body."""


class Headers(dict):
    """Response headers, names lower-cased; get() takes any case. A repeated header keeps its last value."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


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


class _Connection(asyncio.Protocol):
    """One socket: what arrived and not yet read, and the one reader waiting for more."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.paused = False
        self.idle_since = 0.0
        self.received = 0  # bytes ever received: did a request get any answer at all
        self.on_data = None  # set while a released answer's rest is drained

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.buf += data
        if self.on_data is not None:  # a released answer's remaining body, read in the background
            self.on_data()
            return
        if len(self.buf) > PAUSE_AT and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc) -> None:
        self.eof = True
        self.error = self.error or exc
        if self.on_data is not None:
            self.on_data()
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def consumed(self) -> None:
        if self.paused and len(self.buf) < PAUSE_AT // 2:
            self.paused = False
            self.transport.resume_reading()

    @property
    def usable(self) -> bool:
        return not self.eof and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.eof = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An answer whose body is read as it arrives: `await chunk()` until b"", or `await read()`.
    Release it (or use `async with`): a fully read body hands the connection back to the pool."""

    def __init__(self, client: HttpClient, origin_key, conn: _Connection, status: int, reason: str,
                 headers: Headers, no_body: bool):
        self._client, self._key, self._conn = client, origin_key, conn
        self.status, self.reason, self.headers = status, reason, headers
        self.content_type = (headers.get("content-type") or "").partition(";")[0].strip().lower()
        self.deadline: float | None = None  # loop time after which a waiting read raises TimeoutError
        self._timer: asyncio.TimerHandle | None = None  # wakes a waiting read at _timer_at, re-armed as needed
        self._timer_at = 0.0
        self._released = False
        te = (headers.get("transfer-encoding") or "").lower()
        length = headers.get("content-length")
        self._chunked = "chunked" in te
        self._left: int | None = None  # body bytes still to come (Content-Length), or in the current chunk
        self._done = no_body
        if not no_body and not self._chunked and length is not None:
            try:
                self._left = int(length)
            except ValueError:
                raise HttpError(f"bad Content-Length {length!r}") from None
            self._done = self._left == 0
        self._chunk_state = "size"  # chunked: "size" | "data" | "crlf" | "trailer"
        # reusable only when the body's end is known (not "until the connection closes") and the server agrees
        self._keep = (headers.get("connection") or "").lower() != "close" and (
            no_body or self._chunked or self._left is not None)
        encoding = (headers.get("content-encoding") or "").lower()
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS) \
            if encoding in ("gzip", "deflate") else None

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc) -> None:
        self.release()

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The whole body (at most `limit` bytes; the rest is not read and the connection is not reused)."""
        out = bytearray()
        while len(out) < limit:
            piece = await self.chunk()
            if not piece:
                break
            out += piece
        return bytes(out[:limit])

    async def chunk(self) -> bytes:
        """The next body bytes as they arrive (b"" at the end of the body)."""
        while True:
            if self._done:
                return self._inflate.flush() if self._inflate else b""
            piece = self._take()
            if piece:
                return self._inflate.decompress(piece) if self._inflate else piece
            if self._done:
                continue
            conn = self._conn
            if conn.eof:
                if self._chunked or self._left is not None:
                    raise Cut(f"connection lost mid-body: {conn.error or 'closed by the server'}")
                self._done = True  # the body was "until the connection closes"
                continue
            await self._wait()

    def _take(self) -> bytes:
        """Body bytes already buffered, framing removed."""
        conn, buf = self._conn, self._conn.buf
        if not self._chunked:
            if self._left is None:  # read to the end of the connection
                piece = bytes(buf)
            else:
                piece = bytes(buf[:self._left])
                self._left -= len(piece)
                self._done = self._left == 0
            del buf[:len(piece)]
            conn.consumed()
            return piece
        out = bytearray()
        while buf and not self._done:
            if self._chunk_state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise HttpError("malformed chunk size line")
                    break
                size_text = bytes(buf[:end]).partition(b";")[0].strip()
                try:
                    self._left = int(size_text, 16)
                except ValueError:
                    raise HttpError(f"malformed chunk size {size_text[:20]!r}") from None
                del buf[:end + 2]
                self._chunk_state = "data" if self._left else "trailer"
            elif self._chunk_state == "data":
                n = min(self._left, len(buf))
                out += buf[:n]
                del buf[:n]
                self._left -= n
                if not self._left:
                    self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise HttpError("malformed chunk end")
                del buf[:2]
                self._chunk_state = "size"
            else:  # trailer fields, then an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                del buf[:end + 2]
                if end == 0:
                    self._done = True
        conn.consumed()
        return bytes(out)

    async def _wait(self) -> None:
        """Until more bytes, the connection's end, or the deadline (the caller's loop then raises)."""
        conn, loop = self._conn, self._conn.loop
        if self.deadline is not None:
            if loop.time() >= self.deadline:
                raise TimeoutError
            if self._timer is None or self.deadline < self._timer_at:  # none yet, or the deadline came closer
                if self._timer is not None:
                    self._timer.cancel()
                self._timer, self._timer_at = loop.call_at(self.deadline, self._check_deadline), self.deadline
        conn.waiter = fut = loop.create_future()
        await fut

    def _check_deadline(self) -> None:
        self._timer = None
        if self.deadline is None or self._released:
            return
        if self._conn.loop.time() < self.deadline:  # moved on since the timer was set: wait for the new one
            self._timer = self._conn.loop.call_at(self.deadline, self._check_deadline)
            self._timer_at = self.deadline
            return
        self._conn._wake()  # the waiting read finds the deadline passed and raises TimeoutError

    def release(self) -> None:
        """Done with this answer: the connection goes back to the pool once its body was read to the end."""
        if self._released:
            return
        self._released = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self._conn
        conn.waiter = None
        if not self._done and self._keep and conn.usable:
            # A reader that stopped at its format's own end ([DONE], message_stop): the body's end follows at
            # once. Read it in the background and pool the connection then, rather than open a new one for
            # the next request (a TCP, or TLS, handshake each).
            self._drain_left = DRAIN_MAX
            self._drain_timer = conn.loop.call_later(DRAIN_S, conn.close)
            conn.on_data = self._drain
            self._drain()
            return
        self._settle()

    def _drain(self) -> None:
        conn = self._conn
        try:
            self._drain_left -= len(self._take())
        except HttpError:
            self._drain_left = -1
        if self._done or self._drain_left < 0 or conn.eof:
            conn.on_data = None
            self._drain_timer.cancel()
            self._settle()

    def _settle(self) -> None:
        conn = self._conn
        if self._done and self._keep and not conn.buf and conn.usable:
            self._client._put_back(self._key, conn)
        else:
            conn.close()

    close = release


class HttpClient:
    """Keep-alive connection pools per origin. One per bridge process; close() at shutdown."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self._ssl = ssl_context
        self._idle: dict[tuple, list[_Connection]] = {}
        self._origins: dict[str, _Origin] = {}
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

    def _idle_connection(self, key) -> _Connection | None:
        pool = self._idle.get(key)
        while pool:
            conn = pool.pop()
            # bytes on an idle connection answer nothing we asked: it is not used again
            if conn.usable and not conn.buf and conn.loop.time() - conn.idle_since < IDLE_KEEP_S:
                return conn
            conn.close()
        return None

    def _put_back(self, key, conn: _Connection) -> None:
        pool = self._idle.setdefault(key, [])
        if self._closed or len(pool) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        pool.append(conn)

    async def _connect(self, o: _Origin, timeout_s: float, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if o.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        give_up = loop.time() + timeout_s
        try:
            async with asyncio.timeout_at(give_up if deadline is None else min(give_up, deadline)):
                _, conn = await loop.create_connection(lambda: _Connection(loop), o.host, o.port, ssl=tls,
                                                       server_hostname=o.host if tls else None)
        except TimeoutError:
            if deadline is not None and deadline < give_up:
                raise  # the caller's deadline, not the connect timeout
            raise ConnectTimeout(f"connect to {o.host}:{o.port} timed out after {timeout_s}s") from None
        except (OSError, ssl.SSLError) as e:
            raise HttpError(f"cannot connect to {o.host}:{o.port}: {e}") from None
        return conn

    async def _answer(self, key, conn: _Connection, deadline: float | None) -> Response:
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

    async def _head(self, key, conn: _Connection, deadline: float | None, rang: list) -> Response:
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
            return Response(self, key, conn, status, reason, headers, no_body=status in (204, 304))

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
