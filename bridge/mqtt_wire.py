"""MQTT 3.1.1 packets, as far as the bridge's link needs them (docs/bridge.md, "The MQTT link"): CONNECT,
SUBSCRIBE, PUBLISH at QoS 0 and 1, PUBACK, PINGREQ, DISCONNECT out; CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP
in. Pure functions and one incremental reader; nothing here touches a socket.
"""
from __future__ import annotations

import struct

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 2, 3, 4, 9, 13  # packet types the broker sends a client
TOO_BIG = 16  # not an MQTT type (those are 4 bits): a PUBLISH over the reader's limit, its payload skipped unread
# The biggest packet read whole: a request is refused (and answered) over 64 KiB (bridge/rounds/request.py), a
# manifest over 16 KiB; the broker may carry 256 MB. Beyond this a PUBLISH's payload is skipped as it arrives.
MAX_PACKET = 1024 * 1024
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
SUBACK_FAILURE = 0x80
CONNACK_REFUSALS = {1: "unacceptable protocol version", 2: "client identifier rejected", 3: "server unavailable",
                    4: "bad user name or password ([broker] user/password, WISP_BROKER_USER/WISP_BROKER_PASSWORD)",
                    5: "not authorized (the broker refuses this login, or anonymous clients)"}
_PID = struct.Struct("!H")


class ProtocolError(ValueError):
    """The broker sent something that is not MQTT 3.1.1: the connection is dropped and made again."""


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _PID.pack(len(b)) + b


def connect(client_id: str, keepalive_s: int, user: str | None = None, password: str | None = None,
            will: tuple[str, bytes] | None = None) -> bytes:
    """A clean session: the broker keeps nothing for the bridge between connections. will: (topic, payload) the
    broker publishes, retained at QoS 1, when the connection ends without a DISCONNECT (MQTT 3.1.1, 3.1.2.5)."""
    flags = 0x02 | (0x80 if user is not None else 0) | (0x40 if user is not None and password is not None else 0)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will flag, will QoS 1, will retain
    body = _str("MQTT") + bytes([4, flags]) + _PID.pack(keepalive_s) + _str(client_id)
    if will is not None:
        body += _str(will[0]) + _str(will[1])
    if user is not None:
        body += _str(user) + (_str(password) if password is not None else b"")
    return b"\x10" + _length(len(body)) + body


def subscribe(pid: int, topics: list[tuple[str, int]]) -> bytes:
    body = _PID.pack(pid) + b"".join(_str(t) + bytes([qos]) for t, qos in topics)
    return b"\x82" + _length(len(body)) + body


def publish(topic: str, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False, dup: bool = False) -> bytes:
    head = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    t = topic.encode()
    n = 2 + len(t) + (2 if qos else 0) + len(payload)
    return b"".join((bytes([head]), _length(n), _PID.pack(len(t)), t, _PID.pack(pid) if qos else b"", payload))


def with_dup(packet: bytes) -> bytes:
    """The same PUBLISH, marked as sent before (a re-send after a reconnect)."""
    return bytes([packet[0] | 0x08]) + packet[1:]


def puback(pid: int) -> bytes:
    return b"\x40\x02" + _PID.pack(pid)


class Reader:
    """Bytes in, (type, flags, body) packets out; keeps a partial packet until the rest arrives.

    A packet longer than max_len is never buffered whole: a PUBLISH comes out as (TOO_BIG, flags, its topic and
    packet id, no payload) and the rest is discarded as it arrives; any other packet that long is a ProtocolError
    (a broker's control packets are a few bytes; a peer that is not a broker sends anything)."""

    def __init__(self, max_len: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self.max_len = max_len
        self._skip = 0  # bytes of an oversized PUBLISH still to discard

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if self._skip:
            cut = min(self._skip, len(data))
            self._skip -= cut
            data = data[cut:]
        buf = self._buf
        buf += data
        out, at, end = [], 0, len(buf)
        while end - at >= 2:
            n, mult, i = 0, 1, at + 1
            while True:  # remaining length: 1-4 bytes, 7 bits each, least significant first
                if i == end:
                    n = -1  # not all here yet
                    break
                digit = buf[i]
                i += 1
                n += (digit & 0x7F) * mult
                if not digit & 0x80:
                    break
                mult <<= 7
                if mult > 128 ** 3:
                    raise ProtocolError("remaining length longer than 4 bytes")
            if n > self.max_len:
                kind = buf[at] >> 4
                if kind != PUBLISH:
                    raise ProtocolError(f"packet of type {kind} with {n} bytes (at most {self.max_len} read)")
                if end - i < 2:
                    break
                head = 2 + _PID.unpack_from(buf, i)[0] + (2 if buf[at] & 0x06 else 0)  # topic, packet id
                if head > n:
                    raise ProtocolError("malformed PUBLISH")
                if end - i < head:
                    break
                out.append((TOO_BIG, buf[at] & 0x0F, bytes(buf[i:i + head])))
                self._skip = max(0, n - (end - i))  # what has not arrived yet is discarded as it does
                at = min(end, i + n)
                continue
            if n < 0 or end - i < n:
                break
            out.append((buf[at] >> 4, buf[at] & 0x0F, bytes(buf[i:i + n])))
            at = i + n
        if at:
            del buf[:at]
        return out


def read_publish(flags: int, body: bytes) -> tuple[str, bytes, int, int]:
    """(topic, payload, qos, packet id; 0 at QoS 0) of a PUBLISH body."""
    if len(body) < 2:
        raise ProtocolError("PUBLISH without a topic")
    tlen = _PID.unpack_from(body)[0]
    qos = (flags >> 1) & 0x03
    at = 2 + tlen
    if qos == 3 or len(body) < at + (2 if qos else 0):
        raise ProtocolError("malformed PUBLISH")
    topic = body[2:at].decode("utf-8", "replace")
    if not qos:
        return topic, body[at:], 0, 0
    return topic, body[at + 2:], qos, _PID.unpack_from(body, at)[0]


def read_pid(body: bytes) -> int:
    if len(body) < 2:
        raise ProtocolError("packet without its packet id")
    return _PID.unpack_from(body)[0]
