"""The bridge's MQTT connection: MQTT 3.1.1 (bridge/mqtt_wire.py) as an asyncio protocol on the bridge's own loop,
and a supervisor task that connects, keeps the connection alive and reconnects with capped backoff.

Why not paho-mqtt here (the tools and tests use it): a device round is one PUBLISH in, its PUBACK, two or more
PUBLISHes out and their PUBACKs, and paho's per-packet bookkeeping cost the bridge ~190 µs of CPU per round,
a quarter of all it spent at 800 requests/s (docs/benchmarks.md). The link needs little of MQTT: one clean
session, a few subscriptions, QoS 0/1. QoS 1 is kept as paho kept it: each message stays until the broker's
PUBACK, is sent again (DUP) on the next connection, and messages published while disconnected wait for it.

A bridge opens two links: one subscribed (requests, manifests, the fleet view) and one that only publishes the
answers (`publish_only`). The second reads the broker's PUBACKs in batches instead of as they come: at 100
requests/s each PUBACK read was one more wake-up of the bridge per request, ~20 % of its CPU per request
(docs/benchmarks.md). The subscribed link must read at once: requests arrive on it.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import uuid
from collections import deque
from collections.abc import Callable

from bridge import fastjson, protocol
from bridge import mqtt_wire as wire

log = logging.getLogger("wisp.bridge.mqtt")

REQ_TOPIC = protocol.every_device(protocol.LLM_REQ)
SHARED_REQ_TOPIC = protocol.SHARED_GROUP + REQ_TOPIC  # several bridges split the requests between them
MANIFEST_TOPIC = protocol.every_device(protocol.MANIFEST)
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
CONNECT_TIMEOUT_S = 10.0  # TCP, TLS and the broker's CONNACK together
MAX_INFLIGHT = 100  # QoS 1 messages sent and not yet acknowledged; the rest wait in order in the outbox
ACK_READ_AT = MAX_INFLIGHT // 2  # a publish-only link reads its PUBACKs once this many wait (or each MISC_EVERY_S)
OUTBOX_MAX = 10_000  # QoS 1 messages waiting (for a connection, or for room in flight); the oldest go first
MISC_EVERY_S = 1.0  # keepalive bookkeeping
CLOSE_GRACE_S = 2.0  # what is queued gets this long to reach the broker when the bridge stops


class _Refused(Exception):
    """The broker answered CONNECT with a refusal (bad login, not authorized, ...)."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to the broker; packets go to the link once the broker accepted it."""

    def __init__(self, link: MqttLink, loop: asyncio.AbstractEventLoop) -> None:
        self.link = link
        self.reader = wire.Reader(max_len=2)  # until the CONNACK: nothing longer comes first from a broker
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future = loop.create_future()  # the CONNACK return code
        self.lost: asyncio.Future = loop.create_future()  # set when the connection is gone (its reason)

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:  # without it, Nagle + delayed ACK add 40-90 ms to every QoS 1 round trip
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass

    def data_received(self, data: bytes) -> None:
        self.link.last_in = self.link.loop.time()
        try:
            for kind, flags, body in self.reader.feed(data):
                if not self.connack.done():  # a broker's first word is a CONNACK (MQTT 3.1.1, 3.2)
                    if kind != wire.CONNACK or len(body) != 2:
                        raise wire.ProtocolError(f"packet type {kind} of {len(body)} bytes")
                    self.reader.max_len = wire.MAX_PACKET
                    self.connack.set_result(body[1])
                elif self.link.conn is self:
                    self.link.packet(kind, flags, body)
        except wire.ProtocolError as e:
            if not self.connack.done():  # _connect reports it (and the supervisor retries)
                self.connack.set_exception(wire.ProtocolError(f"answered CONNECT with something that is not a "
                                                              f"CONNACK ({e}): is it an MQTT broker?"))
            else:
                log.warning("broker %s:%d sent a malformed packet (%s); reconnecting",
                            self.link.host, self.link.port, e)
            self.transport.abort()
            return
        link = self.link
        if link.publish_only and not link._closing and link.conn is self and len(link._inflight) < ACK_READ_AT:
            self.transport.pause_reading()  # the next acknowledgements wait in the socket until they are many

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link.conn is self:  # from now on QoS 1 messages wait in the outbox for the next connection
            self.link.conn = None
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(str(exc or "closed by the broker before CONNACK")))
        if not self.lost.done():
            self.lost.set_result(exc)


class MqttLink:
    """on_message(topic: str, payload: bytes, retained: bool) is called on `loop`; retained: the broker replays
    a retained message because we (re)subscribed (MQTT 3.1.1, 3.3.1.3; a live one comes with it False).
    `subscribed` is set on `loop` once the broker granted the subscriptions (and cleared while disconnected).
    publish_only: no subscriptions (`subscribed` is set once connected), PUBACKs read in batches (module
    docstring)."""

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[str, bytes, bool], None], *, shared: bool = True,
                 user: str | None = None, password: str | None = None, client_id: str | None = None,
                 extra_topics: tuple[str, ...] = (), tls: bool = False, ca: str | None = None,
                 publish_only: bool = False, presence: tuple[str, bytes, bytes] | None = None):
        self.host, self.port = host, port
        self.loop = loop
        self._on_message = on_message
        self.subscribed = asyncio.Event()
        self._loop_thread = threading.get_ident()  # the link is built on the loop's thread
        self._user, self._password = user, password
        # A unique client id per process: bridges sharing a group must not kick each other off.
        self._client_id = client_id or f"wisp-{'answers' if publish_only else 'bridge'}-{uuid.uuid4().hex[:12]}"
        self.publish_only = publish_only
        # (topic, online, offline): online published retained at every connect, offline by the broker as our will
        # when the connection dies, and by aclose() before a clean DISCONNECT (which discards the will)
        self.presence = presence
        # with ca: only a broker that CA signed; without: the system's trusted CAs
        self._ssl = ssl.create_default_context(cafile=ca) if tls else None
        # MQTT 3.1.1: every broker speaks it, and mosquitto honours $share/ for 3.1.1 clients too.
        # Requests at QoS 0: a clean session gets nothing more from QoS 1 (brokers do not re-send within a
        # connection, and a lost connection's session is gone), while each PUBACK was one more write per request.
        # A request lost with a connection is re-sent by its device (docs/protocol.md).
        self._topics = [] if publish_only else [(SHARED_REQ_TOPIC if shared else REQ_TOPIC, 0), (MANIFEST_TOPIC, 1)]
        self._topics += [(t, 1) for t in extra_topics]  # plain: every bridge sees them (the fleet view)
        self.conn: _Connection | None = None  # while the broker has accepted the connection
        self._inflight: dict[int, bytes] = {}  # packet id -> PUBLISH sent, until its PUBACK (insertion order)
        self._outbox: deque[tuple[str, bytes, bool]] = deque()  # QoS 1 (topic, payload, retain) not yet sent
        self._pending: list[bytes] = []  # packets written this loop turn, for one write to _pending_to
        self._pending_to: asyncio.Transport | None = None
        self._pid = 0
        self._sub_pid = 0
        self._suback_due = False  # SUBSCRIBE sent on this connection, no SUBACK yet
        self.last_in = self._last_out = 0.0
        self._ping_sent: float | None = None
        self._supervisor: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        """Connect in the background; retried with capped backoff until the broker answers."""
        self._supervisor = self.loop.create_task(self._supervise())

    def publish(self, topic: str, payload: dict | bytes | str, qos: int = 1, retain: bool = False) -> None:
        """On the loop: written to the connection now. While disconnected QoS 1 messages wait for the next
        connection (QoS 0 ones are dropped). From another thread: handed to the loop."""
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.publish, topic, payload, qos, retain)
            return
        if isinstance(payload, dict):
            payload = fastjson.dumps(payload)
        elif isinstance(payload, str):
            payload = payload.encode()
        if not qos:
            if self.conn is None:
                log.warning("publish to %s: not connected (QoS 0: dropped)", topic)
                return
            self._write(wire.publish(topic, payload, 0, 0, retain))
        elif self.conn is None or self._outbox or len(self._inflight) >= MAX_INFLIGHT:
            if len(self._outbox) >= OUTBOX_MAX:
                dropped = self._outbox.popleft()
                log.warning("outbox full (%d messages): dropped the oldest, to %s", OUTBOX_MAX, dropped[0])
            self._outbox.append((topic, payload, retain))
        else:
            self._send(topic, payload, retain)

    async def aclose(self) -> None:
        """Send what is queued, disconnect cleanly, stop the supervisor."""
        self._closing = True
        conn = self.conn
        if conn is not None:
            if self.presence:
                self.publish(self.presence[0], self.presence[2], 1, retain=True)
            conn.transport.resume_reading()  # the acknowledgements of what is in flight, as they come
            deadline = self.loop.time() + CLOSE_GRACE_S
            while (self._inflight or self._outbox) and not conn.lost.done() and self.loop.time() < deadline:
                await asyncio.sleep(0.01)
            self._flush()
            if not conn.transport.is_closing():
                conn.transport.write(wire.DISCONNECT)
                conn.transport.close()  # after what is buffered is written
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)

    # ---- sending -----------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Packets written in one loop turn go out in one write at the end of it (one system call for the
        PUBACKs of a read's messages, the answers of the rounds the turn ran) instead of one each."""
        transport = self.conn.transport
        if transport.is_closing():  # going down: what is in flight is sent again on the next connection
            return
        if self._pending_to is not transport:
            self._flush()
            self._pending_to = transport
            self.loop.call_soon(self._flush)
        self._pending.append(data)
        self._last_out = self.loop.time()

    def _flush(self) -> None:
        transport, pending = self._pending_to, self._pending
        if transport is None:
            return
        self._pending_to, self._pending = None, []
        if not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _next_pid(self) -> int:
        while True:
            self._pid = self._pid % 65535 + 1
            if self._pid not in self._inflight and self._pid != self._sub_pid:
                return self._pid

    def _send(self, topic: str, payload: bytes, retain: bool) -> None:
        pid = self._next_pid()
        packet = self._inflight[pid] = wire.publish(topic, payload, 1, pid, retain)
        self._write(packet)
        if self.publish_only and len(self._inflight) == ACK_READ_AT:
            self.conn.transport.resume_reading()

    def _drain_outbox(self) -> None:
        while self._outbox and self.conn is not None and len(self._inflight) < MAX_INFLIGHT:
            self._send(*self._outbox.popleft())

    # ---- receiving (on the loop, from _Connection.data_received) -----------------------------------------
    def packet(self, kind: int, flags: int, body: bytes) -> None:
        if kind == wire.PUBLISH:
            topic, payload, qos, pid = wire.read_publish(flags, body)
            if qos == 2:  # the subscriptions are QoS 1: a broker never sends more
                raise wire.ProtocolError("QoS 2 message on a QoS 1 subscription")
            if qos:
                self._write(wire.puback(pid))
            try:
                self._on_message(topic, payload, bool(flags & 0x01))
            except Exception:  # one bad message must not cost the connection
                log.exception("handling a message on %s failed", topic)
        elif kind == wire.TOO_BIG:  # its payload is skipped unread: acknowledged, never handled
            topic, _, qos, pid = wire.read_publish(flags, body)
            if qos == 2:
                raise wire.ProtocolError("QoS 2 message on a QoS 1 subscription")
            if qos:
                self._write(wire.puback(pid))
            log.warning("message on %s skipped unread: over %d bytes", topic, wire.MAX_PACKET)
        elif kind == wire.PUBACK:
            self._inflight.pop(wire.read_pid(body), None)
            if self._outbox:
                self._drain_outbox()
        elif kind == wire.SUBACK:
            self._suback(body)
        elif kind == wire.PINGRESP:
            self._ping_sent = None
        else:  # a second CONNACK, or a packet only a client sends: a protocol violation (MQTT 3.1.1, 4.8)
            raise wire.ProtocolError(f"unexpected packet type {kind} from the broker")

    def _suback(self, body: bytes) -> None:
        if wire.read_pid(body) != self._sub_pid:
            return
        self._suback_due = False
        codes = body[2:]
        failed = [f"{t} (0x{c:02x})" for (t, _), c in zip(self._topics[:2], codes[:2], strict=False)
                  if c == wire.SUBACK_FAILURE]
        if failed or len(codes) < 2:  # requests and manifests: required
            # Connected but deaf: say so, and ask again after a back-off (an ACL fixed later is picked up).
            log.error("broker %s:%d refused subscriptions %s: this bridge gets no requests; its login needs read "
                      "access to them in the broker's ACL (on a broker without shared subscriptions: WISP_SHARED=0)",
                      self.host, self.port, failed or [t for t, _ in self._topics])
            self.conn.transport.abort()
            return
        # the fleet view's topics: a refusal degrades the dashboard, it is not fatal
        for (topic, _), code in zip(self._topics[2:], codes[2:], strict=False):
            if code == wire.SUBACK_FAILURE:
                log.warning("broker refused %s: the dashboard will miss it", topic)
        log.info("subscribed to %s", ", ".join(t for t, _ in self._topics))
        self.subscribed.set()

    def _closed_instead_of_suback(self) -> None:
        # MQTT 3.1.1 (3.8.4) wants a SUBACK, 0x80 for a filter the broker will not serve; ejabberd's mod_mqtt
        # (23.01) closes the connection on a $share/ filter instead, which would read as a flaky network.
        topics = ", ".join(t for t, _ in self._topics)
        hint = (" (a broker without shared subscriptions does this for $share/: WISP_SHARED=0, or [broker] "
                "shared = false)" if self._topics[0][0].startswith("$share/") else "")
        log.error("broker %s:%d closed the connection instead of answering the subscription to %s: this bridge "
                  "gets no requests%s", self.host, self.port, topics, hint)

    # ---- the connection's life ---------------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closing:
            try:
                conn = await self._connect()
            except _Refused as e:
                log.error("broker %s:%d refused the connection: %s", self.host, self.port, e)
            except wire.ProtocolError as e:
                log.warning("broker %s:%d %s; retrying in %d s", self.host, self.port, e, delay)
            except (OSError, ssl.SSLError, TimeoutError) as e:
                log.warning("cannot reach broker %s:%d (%s); retrying in %d s", self.host, self.port,
                            e or type(e).__name__, delay)
            else:
                log.info("connected to broker %s:%d", self.host, self.port)
                reason = await self._serve(conn)
                if self._closing:
                    return
                log.warning("disconnected from broker: %s; reconnecting", reason or "connection closed")
                if self._suback_due:
                    self._closed_instead_of_suback()
                # it was up: the next attempt starts from the short delay; refused or dropped before
                # subscribing (e.g. a bad login): back off
                was_up = self.subscribed.is_set()
                self.subscribed.clear()
                if was_up:
                    delay = RECONNECT_MIN_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _connect(self) -> _Connection:
        """TCP (and TLS), CONNECT, CONNACK."""
        transport = conn = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                transport, conn = await self.loop.create_connection(
                    lambda: _Connection(self, self.loop), self.host, self.port, ssl=self._ssl)
                will = (self.presence[0], self.presence[2]) if self.presence else None
                transport.write(wire.connect(self._client_id, KEEPALIVE_S, self._user, self._password, will))
                code = await conn.connack
        except BaseException:
            if conn is not None:
                conn.connack.cancel()  # nobody waits for it any more
                transport.abort()
            raise
        if code:
            transport.abort()
            reason = wire.CONNACK_REFUSALS.get(code, f"return code {code}")
            if code == 2:  # MQTT 3.1.1 only promises ids of 1-23 characters of 0-9 a-z A-Z (3.1.3.1)
                reason += f" ({self._client_id!r}: this broker may want 1-23 characters of 0-9 a-z A-Z)"
            raise _Refused(reason)
        return conn

    async def _serve(self, conn: _Connection):
        """Subscribe, send what waits, keep alive; returns once the connection is gone (its reason)."""
        self.conn = conn
        self.last_in = self._last_out = self.loop.time()
        self._ping_sent = None
        # Subscribing on every connection renews the subscriptions (a clean session forgets them).
        self._sub_pid = 0
        if self.publish_only:
            self.subscribed.set()
        else:
            self._sub_pid = self._next_pid()
            self._suback_due = True
            self._write(wire.subscribe(self._sub_pid, self._topics))
        for packet in self._inflight.values():  # sent before, never acknowledged: again, marked as a re-send
            self._write(wire.with_dup(packet))
        if self.presence:
            self.publish(self.presence[0], self.presence[1], 1, retain=True)
        self._drain_outbox()
        try:
            while not conn.lost.done():
                await asyncio.wait([conn.lost], timeout=MISC_EVERY_S)
                if not conn.lost.done():
                    self._keepalive(conn)
                    if self.publish_only:  # acknowledgements, a ping's answer, or the broker closing
                        conn.transport.resume_reading()
            return conn.lost.result()
        finally:
            self.conn = None

    def _keepalive(self, conn: _Connection) -> None:
        now = self.loop.time()
        if self._ping_sent is not None:
            if now - self._ping_sent > KEEPALIVE_S:  # a broker that does not answer is gone
                log.warning("broker %s:%d did not answer a ping in %d s", self.host, self.port, KEEPALIVE_S)
                conn.transport.abort()
        elif now - self._last_out >= KEEPALIVE_S / 2 or now - self.last_in >= KEEPALIVE_S / 2:
            self._write(wire.PINGREQ)
            self._ping_sent = now
