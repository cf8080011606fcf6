# Small asyncio MQTT 3.1.1 client for the device: QoS 0/1, last will, keepalive, reconnect.
# One supervisor task owns the connection; publish() waits (bounded) for the link and never
# blocks the loop. Incoming payloads over MAX_PAYLOAD are skipped unread, so a hostile
# message cannot exhaust the heap. Opening a connection is wisp/mqtt_open.py, loaded per connect.
import asyncio
import gc
import struct
import time

from micropython import const

from wisp import limits, unload

_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

_SKIP_CHUNK = const(256)


class MQTTError(Exception):
    pass


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return out


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


class MQTTClient:
    """on_message(topic: str, payload: bytearray | None, size: int, retained: int) is called from the
    reader task; payload is None when the message was larger than MAX_PAYLOAD and was skipped;
    retained is 1 for a retained message the broker replays because we (re)subscribed.
    on_connect() (a coroutine function) runs after every (re)connect: subscribe and announce there."""

    def __init__(self, client_id, host, port=1883, user=None, password=None,
                 keepalive_s=limits.MQTT_KEEPALIVE_S, will=None, on_message=None, on_connect=None,
                 log=None, ssl=None, open_timeout_ms=limits.MQTT_OPEN_TIMEOUT_MS, on_starved=None):
        self.client_id = client_id
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.keepalive_s = keepalive_s
        self.will = will  # (topic, payload bytes, retain, qos)
        self.on_message = on_message
        self.on_connect = on_connect
        self.log = log or (lambda *a: None)
        self.ssl = ssl  # an SSLContext with the broker's CA pinned (wisp/tls.py), or None
        self.open_timeout_ms = open_timeout_ms
        self.on_starved = on_starved  # called when reconnects keep failing for memory (run())
        self._addr = None          # the broker's resolved address, kept while it works
        self.up = asyncio.Event()
        self.connects = 0          # successful connects, for status and tests
        self.ready = 0             # connects whose on_connect completed: the heap once sufficed
        self._reader = self._writer = None
        self._wlock = asyncio.Lock()
        self._pid = 0
        self._acks = {}            # packet id -> Event, for PUBACK / SUBACK
        self._last_rx = 0
        self._stop = False
        self._connect_failed = False  # what on_connect raised: the supervisor backs off, then reconnects
        self._open_starved = False  # the last connect failed in a way a fresh heap may cure

    # ---- packets -------------------------------------------------------------------------
    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def _send(self, head, pieces=()):
        """Write one packet: its header, then each piece (bytes or str) as the iterator produces
        it, so a big payload is never copied into one buffer with its header."""
        w = self._writer
        if w is None:
            raise MQTTError("not connected")
        async with self._wlock:
            w.write(head)
            for part in pieces:
                w.write(part.encode() if isinstance(part, str) else part)
                await w.drain()
            await w.drain()

    async def _read_packet(self):
        r = self._reader
        first = (await r.readexactly(1))[0]
        n = shift = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")
        self._last_rx = time.ticks_ms()
        return first, n

    async def _skip(self, n):
        while n > 0:
            chunk = min(n, _SKIP_CHUNK)
            await self._reader.readexactly(chunk)
            n -= chunk

    # ---- connection ----------------------------------------------------------------------
    async def _open(self):
        """Connect and get CONNACK (wisp/mqtt_open.py, loaded for the connect only: between
        connects its code holds no heap beside the requests). Raises what failed;
        _open_starved then says whether a fresh heap may cure it."""
        self._open_starved = False
        from wisp import mqtt_open
        try:
            await mqtt_open.connect(self)
        except Exception as e:
            self._open_starved = bool(self.ssl) and mqtt_open.starved(e)
            raise
        finally:
            mqtt_open = None  # drop our reference too, so unload below frees the module
            unload("wisp.mqtt_open")

    def _close(self):
        w = self._writer
        self._reader = self._writer = None
        self.up.clear()
        for ev in self._acks.values():
            ev.set()  # wake waiters; they see the link is down
        self._acks = {}
        if w is not None:
            try:
                w.close()
                # MicroPython's Stream.close() only marks the stream; the socket itself closes in
                # wait_closed(). Close it now: an ESP32 has ~10 sockets, and a dropped link must
                # reach the broker at once (it then publishes our will).
                w.s.close()
            except Exception:
                pass

    async def open_first(self):
        """Connect once, before run(), which then serves this connection: at boot, before the rest
        of the firmware takes the heap a TLS handshake needs. A failure is left to run(), which
        tries again at once and logs the outcome (one line, not two of the same)."""
        gc.collect()  # the handshake wants large contiguous blocks
        try:
            await self._open()
        except Exception:
            self._close()

    async def run(self):
        """Supervisor: connect, serve, reconnect with capped exponential backoff. Never returns
        unless stop() is called."""
        delay = limits.RECONNECT_BASE_MS
        starved = 0  # reconnects failed in a row for what may be memory (_starved, on_connect)
        while not self._stop:
            try:
                if self._writer is None:  # else open_first() connected already
                    await self._open()
            except Exception as e:
                self.log("mqtt: connect to %s:%d failed: %r; retry in %d ms" % (self.host, self.port, e, delay))
                self._close()
                starved = self._starving(starved, isinstance(e, MemoryError) or self._open_starved)
                await asyncio.sleep_ms(delay)
                delay = min(delay * 2, limits.RECONNECT_CAP_MS)
                continue
            self.connects += 1
            self._connect_failed = False
            self.up.set()
            since = time.ticks_ms()
            tasks = [asyncio.create_task(self._read_loop()), asyncio.create_task(self._keepalive_loop())]
            if self.on_connect:
                # a task, not awaited here: if the link drops mid-announce we must notice, not
                # sit in its publishes' timeouts
                tasks.append(asyncio.create_task(self._announce()))
            await self._wait_down()
            for task in tasks:
                task.cancel()
            self._close()
            if self._stop:
                break
            lived = time.ticks_diff(time.ticks_ms(), since) // 1000
            if not self._connect_failed and lived < limits.LINK_STABLE_S:
                # dropped as soon as it was up: reconnecting at once would loop, as two devices
                # with one client id take turns kicking each other off the broker
                self.log("mqtt: link lost %d s after connecting (client id %s in use elsewhere? an ACL?); "
                         "retry in %d ms" % (lived, self.client_id, delay))
                self._connect_failed = True
            if self._connect_failed:  # part of connecting: back off as after a refused connect
                starved = self._starving(starved, isinstance(self._connect_failed, MemoryError))
                await asyncio.sleep_ms(delay)
                delay = min(delay * 2, limits.RECONNECT_CAP_MS)
            else:
                starved = 0
                delay = limits.RECONNECT_BASE_MS
                self.log("mqtt: link down; reconnecting")

    def _starving(self, starved, memory):
        """One more reconnect failed: the count of those in a row that failed for memory. After
        STARVED_RESET of them on a boot whose link once worked, reset: the heap after boot is one
        the connect is known to fit (a heap fragmented by hours of work may not)."""
        starved = starved + 1 if memory and self.ready else 0
        if starved >= limits.STARVED_RESET and self.on_starved:
            try:
                self.log("mqtt: reconnects keep failing (out of heap?): resetting")
            finally:
                self.on_starved()  # even when the heap cannot hold the log line
        return starved

    async def _announce(self):
        try:
            await self.on_connect()
            self.ready += 1
        except Exception as e:
            if not self.up.is_set():
                return  # the link dropped under it: the supervisor reconnects anyway
            # A link that is up but not subscribed (or not announced) would look healthy and
            # hear nothing: treat the failure as a failed connect, as mqtt_as does.
            self.log("mqtt: on_connect failed: %r; reconnecting" % (e,))
            self._connect_failed = e  # truthy: run() backs off (and counts a MemoryError)
            self.up.clear()

    async def _wait_down(self):
        while self.up.is_set() and not self._stop:
            await asyncio.sleep_ms(100)

    async def _read_loop(self):
        try:
            while True:
                first, n = await self._read_packet()
                kind = first & 0xF0
                if kind == _PUBLISH:
                    await self._on_publish(first, n)
                elif kind in (_PUBACK, _SUBACK):
                    body = await self._reader.readexactly(n)
                    pid = struct.unpack_from("!H", body)[0]
                    ev = self._acks.pop(pid, None)
                    if ev:
                        ev.refused = kind == _SUBACK and body[2:3] == b"\x80"  # subscribe() names it
                        ev.set()
                else:
                    await self._skip(n)  # PINGRESP and anything unexpected
        except Exception as e:
            if not self._stop:
                self.log("mqtt: read failed: %r" % e)
        self.up.clear()

    async def _on_publish(self, first, n):
        r = self._reader
        qos = (first >> 1) & 3
        tlen = struct.unpack("!H", await r.readexactly(2))[0]
        n -= tlen + (4 if qos else 2)  # what is left is the payload
        if n < 0 or qos == 3:
            # reading on would swallow the next packets or wait for bytes that never come:
            # a protocol violation closes the connection (MQTT 3.1.1 4.8)
            raise MQTTError("malformed PUBLISH")
        if tlen > limits.MAX_TOPIC:
            await self._skip(tlen)  # ids of peers never need topics this long
            topic = None
        else:
            try:
                topic = (await r.readexactly(tlen)).decode()
            except UnicodeError:  # brokers should refuse such topics; never let one kill the link
                topic = None
        pid = 0
        if qos:
            pid = struct.unpack("!H", await r.readexactly(2))[0]
        payload = None
        if n > limits.MAX_PAYLOAD:
            await self._skip(n)
        elif n:
            try:
                # the block first, then the bytes: without heap for it the message is dropped, not
                # the link (readexactly could fail after reading part of it, out of step)
                payload = bytearray(n)
            except MemoryError:
                await self._skip(n)
                self.log("mqtt: message on %s dropped: no %d bytes of heap free for it" % (topic, n))
                topic = None
            else:
                got, view = 0, memoryview(payload)
                while got < n:
                    k = await r.readinto(view[got:])
                    if not k:
                        raise EOFError
                    got += k
        else:
            payload = b""
        if qos == 1:
            await self._send(struct.pack("!BBH", _PUBACK, 2, pid))
        if topic is not None and self.on_message:
            try:
                self.on_message(topic, payload, n, first & 1)
            except Exception as e:
                self.log("mqtt: message handler failed on %s: %r" % (topic, e))

    async def _keepalive_loop(self):
        period = self.keepalive_s * 1000 // 2
        while True:
            await asyncio.sleep_ms(period)
            if time.ticks_diff(time.ticks_ms(), self._last_rx) > self.keepalive_s * 1500:
                self.log("mqtt: broker silent for %d s; dropping link" % (self.keepalive_s * 3 // 2))
                self.up.clear()
                return
            try:
                # bounded: a write stuck on a dead link (a full lwIP send buffer) must not hold
                # this check, and the link, for the minutes TCP takes to give up
                await asyncio.wait_for_ms(self._send(bytes((_PINGREQ, 0))), period)
            except Exception:
                self.up.clear()
                return

    # ---- public API ----------------------------------------------------------------------
    async def wait_up(self, timeout_ms=limits.LINK_WAIT_MS):
        if self.up.is_set():
            return True
        try:
            await asyncio.wait_for_ms(self.up.wait(), timeout_ms)
            return True
        except asyncio.TimeoutError:
            return False

    async def publish(self, topic, payload, retain=False, qos=0, wait_ms=limits.LINK_WAIT_MS):
        """Returns True when sent (and acknowledged for QoS 1), False if the link stayed down.
        payload: str or bytes, a list of them, or a function returning an iterator of them
        (called twice: once for the length, once to send), so a big payload built in pieces,
        like the manifest, is never whole in RAM."""
        if isinstance(payload, str):
            payload = payload.encode()
        if callable(payload):
            pieces = payload
        else:
            whole = payload if isinstance(payload, list) else (payload,)
            pieces = lambda: whole  # noqa: E731
        size = 0
        for piece in pieces():
            size += len(piece.encode() if isinstance(piece, str) else piece)
        for _attempt in range(2):
            if not await self.wait_up(wait_ms):
                return False
            t = _str(topic)
            flags = _PUBLISH | (qos << 1) | (1 if retain else 0)
            if _attempt and qos:
                flags |= 0x08  # DUP: a resend after the link dropped (never on QoS 0: MQTT-3.3.1-2)
            ev = None
            if qos:
                pid = self._next_pid()
                ev = asyncio.Event()
                self._acks[pid] = ev
                head = bytes([flags]) + _varint(len(t) + 2 + size) + t + struct.pack("!H", pid)
            else:
                head = bytes([flags]) + _varint(len(t) + size) + t
            try:
                await self._send(head, pieces())
                if not ev:
                    return True
                await asyncio.wait_for_ms(ev.wait(), limits.MQTT_ACK_TIMEOUT_MS)
                if self.up.is_set():
                    return True
            except Exception as e:
                self.log("mqtt: publish to %s failed: %r" % (topic, e))
                self.up.clear()
        return False

    async def subscribe(self, topic, qos=1):
        pid = self._next_pid()
        ev = asyncio.Event()
        ev.refused = False
        self._acks[pid] = ev
        t = _str(topic)
        try:
            await self._send(bytes([_SUBSCRIBE]) + _varint(len(t) + 3) + struct.pack("!H", pid) + t + bytes((qos,)))
            await asyncio.wait_for_ms(ev.wait(), limits.MQTT_ACK_TIMEOUT_MS)
        finally:
            self._acks.pop(pid, None)  # a SUBACK that never came must not leave its entry behind
        if not self.up.is_set():
            raise MQTTError("link lost while subscribing")
        if ev.refused:  # the broker's ACL, say: the device works on, deaf to this topic
            self.log("mqtt: broker refused the subscription to %s" % topic)

    def abort(self):
        """Drop the connection without DISCONNECT, outside any event loop (Ctrl-C at the console):
        the broker then publishes our will at once, so the status says offline while we are. The
        tasks waiting on the link belong to that loop: none of them may wake in the next one."""
        self._acks = {}
        self._close()
        self.up, self._wlock = asyncio.Event(), asyncio.Lock()

    async def stop(self):
        self._stop = True
        if self._writer is not None:
            try:  # bounded: on a dead link the write would wait until TCP gives up (the REPL hung)
                await asyncio.wait_for_ms(self._send(bytes((_DISCONNECT, 0))), limits.MQTT_GOODBYE_MS)
            except Exception:
                pass
        self._close()
