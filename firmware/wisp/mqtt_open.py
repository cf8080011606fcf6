# Opening the MQTT link (wisp/mqtt.py MQTTClient._open): resolve the broker, connect TCP (and
# TLS), send CONNECT and read CONNACK, all within the client's open timeout. Loaded for each
# connect and dropped after it: between connects its code holds no heap beside the requests.
import asyncio
import socket
import struct

from micropython import const

from wisp.mqtt import MQTTError, _str, _varint

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_CONNACK_ERRORS = ("", "bad protocol version", "client id rejected", "server unavailable",
                   "bad user name or password", "not authorised")
# mbedTLS "allocation failed" codes: low-level (bignum, ASN.1) and high-level (SSL, public key,
# X.509, elliptic curves, cipher)
_ALLOC_LOW = (0x10, 0x6A)
_ALLOC_HIGH = (0x7F00, 0x3F80, 0x2880, 0x4D80, 0x6180)


def starved(e):
    """A failed TLS handshake that a fresh heap may cure: out of memory (MemoryError; ENOMEM or an
    mbedTLS error code with an allocation failure in it, e.g. -0x4290 = RSA public key operation
    failed + bignum allocation failed), or a certificate check failing for a CA that verified
    this broker before: mbedTLS reports an allocation failing inside the signature check as a bad
    signature. Only counted after the link was up, so a wrong CA at boot never resets the board."""
    if isinstance(e, (MemoryError, ValueError)):
        return True
    code = e.args[0] if isinstance(e, OSError) and e.args and isinstance(e.args[0], int) else 0
    # ENOMEM; mbedTLS codes: a high-level part (bits 7-14) plus a low-level part (bits 0-6)
    return code == 12 or code < 0 and ((-code & 0x7F) in _ALLOC_LOW or (-code & 0x7F80) in _ALLOC_HIGH)


async def connect(c):
    """Connect client c and get CONNACK, all within c.open_timeout_ms: a broker that accepts TCP
    and then says nothing (or stalls the TLS handshake) cannot hold the supervisor."""
    try:
        await asyncio.wait_for_ms(_handshake(c), c.open_timeout_ms)
    except Exception as e:
        c._addr = None  # the broker may have moved: resolve again next time
        if isinstance(e, OSError) and e.errno in (104, 111):
            # ECONNREFUSED; ECONNRESET before CONNACK: what an ESP32 reports for a refused connect
            # too, and what a listener does with bytes it does not speak (mosquitto's with plain
            # MQTT on its TLS port and the reverse)
            raise MQTTError("%s:%d refused or reset the connection: no broker there, or TLS there and broker.tls "
                            "off, or the reverse?" % (c.host, c.port))
        raise


async def _handshake(c):
    _dial(c)
    await c._send(_connect_packet(c))
    first, n = await c._read_packet()
    if first != _CONNACK or n != 2:  # before reading n bytes: not a broker, n may be 256 MB
        raise MQTTError("expected CONNACK")
    body = await c._reader.readexactly(2)
    if body[1]:
        code = body[1]
        reason = _CONNACK_ERRORS[code] if code < len(_CONNACK_ERRORS) else str(code)
        if code > 3:  # 4 or 5 (6+ are reserved): mosquitto answers 5 to a wrong password, an
            # unknown user and a missing login alike
            reason += " (broker.user, broker.password?)"
        raise MQTTError("broker refused connection: " + reason)


def _dial(c):
    """Start a non-blocking TCP (and TLS) connection; the first write completes it. Like
    asyncio.open_connection, but TCP_NODELAY is set on the TCP socket before TLS wraps it (an SSL
    socket has no setsockopt; without it a QoS 1 round trip waits 40-90 ms on Nagle and delayed
    ACK), and the broker's address is resolved once (getaddrinfo blocks the loop), then again
    only after a failed connect."""
    if c._addr is None:
        try:
            c._addr = socket.getaddrinfo(c.host, c.port, 0, socket.SOCK_STREAM)[0][-1]
        except OSError as e:  # an ESP32 says only "OSError(-202)"
            raise MQTTError("cannot resolve %s: %r" % (c.host, e))
    s = socket.socket()
    try:
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY on Linux and lwIP
    except OSError:
        pass
    s.setblocking(False)
    try:
        s.connect(c._addr)
    except OSError as e:
        if e.errno != 115 and e.errno != 119:  # EINPROGRESS on Linux, lwIP
            s.close()
            raise
    if c.ssl:
        s = c.ssl.wrap_socket(s, server_hostname=c.host, do_handshake_on_connect=False)
        s.setblocking(False)
    c._reader = c._writer = asyncio.StreamReader(s)


def _connect_packet(c):
    flags = 0x02  # clean session: subscriptions are renewed in on_connect
    body = bytearray(b"\x00\x04MQTT\x04")
    payload = _str(c.client_id)
    if c.will:
        topic, msg, retain, qos = c.will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if c.user is not None:
        flags |= 0x80
        payload += _str(c.user)
        if c.password is not None:
            flags |= 0x40
            payload += _str(c.password)
    body.append(flags)
    body += struct.pack("!H", c.keepalive_s)
    body += payload
    return bytes([_CONNECT]) + _varint(len(body)) + body
