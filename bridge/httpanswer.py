"""The answer side of the tier calls' HTTP/1.1 client (bridge/httpclient.py): one socket's protocol and the
answer read from it as it streams, with its body framing (Content-Length, chunked, to the connection's end),
its read deadline, and the hand-back of its connection to the pool once the body has ended.

Deadlines are loop times set on the response (`deadline`): a read still waiting when it passes raises
TimeoutError. One timer per response re-arms itself when the deadline moved, instead of one per read.
"""
from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable

PAUSE_AT = 256 * 1024  # unread body bytes at which the socket stops being read until the reader catches up
DRAIN_S = 1.0  # after a reader stopped early: how long the rest of the body may take before the connection closes
DRAIN_MAX = 64 * 1024  # ...and how many more body bytes it may carry


class HttpError(Exception):
    """The connection failed or the server's answer is not HTTP/1.1: refused, reset, cut, malformed."""


class Cut(HttpError):
    """The connection ended inside the answer's body."""


class Headers(dict):
    """Response headers, names lower-cased; get() takes any case. A repeated header keeps its last value."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class Connection(asyncio.Protocol):
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

    def __init__(self, put_back: Callable[[Connection], None], conn: Connection, status: int, reason: str,
                 headers: Headers, no_body: bool):
        self._put_back, self._conn = put_back, conn  # put_back: the pool's, for a connection to reuse
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

    async def __aexit__(self, exc_type, exc, tb) -> None:
        # a reader that stopped at the answer's own end releases it (the connection may be pooled); one that
        # gave up on it (a hedge that lost, a stall, a cut, the budget over) closes it: the server stops
        # generating (and billing) at once instead of while the rest of the body is waited for
        if exc_type is None:
            self.release()
        else:
            self.abort()

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
        if not buf:
            return b""
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
        # Chunked: walk the buffer by index and cut what was read once at the end (it ran once per chunk on
        # every tier answer, and each cut moves the rest of the buffer).
        out = []
        pos, size = 0, len(buf)
        state, left = self._chunk_state, self._left
        try:
            while pos < size and not self._done:
                if state == "data":
                    n = min(left, size - pos)
                    out.append(buf[pos:pos + n])
                    pos += n
                    left -= n
                    if not left:
                        state = "crlf"
                elif state == "size":
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        if size - pos > 1024:
                            raise HttpError("malformed chunk size line")
                        break
                    size_text = bytes(buf[pos:end]).partition(b";")[0].strip()
                    try:
                        left = int(size_text, 16)
                    except ValueError:
                        raise HttpError(f"malformed chunk size {size_text[:20]!r}") from None
                    pos = end + 2
                    state = "data" if left else "trailer"
                elif state == "crlf":
                    if size - pos < 2:
                        break
                    if buf[pos:pos + 2] != b"\r\n":
                        raise HttpError("malformed chunk end")
                    pos += 2
                    state = "size"
                else:  # trailer fields, then an empty line
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        break
                    self._done = end == pos
                    pos = end + 2
        finally:
            del buf[:pos]
            self._chunk_state, self._left = state, left
        conn.consumed()
        return b"".join(out)

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

    def abort(self) -> None:
        """Done with this answer before its end, and with its connection: closing it stops the server's work."""
        self.release()
        self._conn.close()

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
            self._put_back(conn)
        else:
            conn.close()
