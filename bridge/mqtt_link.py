"""The bridge's MQTT connection: paho-mqtt driven by the asyncio loop itself (paho's external-loop API: the
socket is watched with add_reader/add_writer, a supervisor task connects, keeps alive and reconnects).

No network thread: a received message is handled, and a publish written to the socket, in the loop's own turn,
without a wake-up write and a GIL hand-off between threads for each message. Connecting (DNS, TCP, TLS
handshake) blocks, so it runs in a worker thread before the socket is handed to the loop.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt

from bridge import fastjson, protocol

log = logging.getLogger("wisp.bridge.mqtt")

REQ_TOPIC = protocol.every_device(protocol.LLM_REQ)
SHARED_REQ_TOPIC = protocol.SHARED_GROUP + REQ_TOPIC  # several bridges split the requests between them
MANIFEST_TOPIC = protocol.every_device(protocol.MANIFEST)
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
MAX_INFLIGHT = 100  # paho's default of 20 unacked QoS 1 messages would queue replies of concurrent requests
MISC_EVERY_S = 1.0  # paho's keepalive and retry bookkeeping (loop_misc)
CLOSE_GRACE_S = 2.0  # what is queued gets this long to reach the broker when the bridge stops


class MqttLink:
    """on_message(topic: str, payload: bytes) is called on `loop`. `subscribed` is set on `loop` once the
    broker granted the subscriptions (and cleared while disconnected)."""

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[str, bytes], None], *, shared: bool = True,
                 user: str | None = None, password: str | None = None, client_id: str | None = None,
                 extra_topics: tuple[str, ...] = (), tls: bool = False, ca: str | None = None):
        self.host, self.port = host, port
        self._loop = loop
        self._on_message = on_message
        self.subscribed = asyncio.Event()
        self._loop_thread = threading.get_ident()  # the link is built on the loop's thread
        self._sock = None  # the socket the loop watches, while connected
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task | None = None
        self._closing = False
        self._connecting = False  # paho's reconnect() runs in a worker thread: the client is not ours to touch
        self._held: list[tuple] = []  # publishes made meanwhile, handed to paho once it is back
        self._topics = [(SHARED_REQ_TOPIC if shared else REQ_TOPIC, 1), (MANIFEST_TOPIC, 1)]
        self._topics += [(t, 1) for t in extra_topics]  # plain: every bridge sees them (the fleet view)
        # MQTT 3.1.1: every broker speaks it, and mosquitto honours $share/ for 3.1.1 clients too.
        # A unique client id per process: bridges sharing a group must not kick each other off.
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, clean_session=True,
                        client_id=client_id or f"wisp-bridge-{uuid.uuid4().hex[:12]}")
        if user:
            c.username_pw_set(user, password)
        if tls:  # with ca: only a broker that CA signed; without: the system's trusted CAs
            c.tls_set(ca_certs=ca)
        c.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        # With these set paho never writes from inside publish() (or from the connecting thread): _flush() does,
        # on the loop, after the CONNECT that reconnect() queued.
        c.on_socket_register_write = c.on_socket_unregister_write = lambda client, userdata, sock: None
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subscribed
        c.on_message = self._message
        self._client = c

    def start(self) -> None:
        """Connect in the background; retried with capped backoff until the broker answers."""
        self._client.connect_async(self.host, self.port, KEEPALIVE_S)
        self._supervisor = self._loop.create_task(self._supervise())

    def publish(self, topic: str, payload: dict | bytes, qos: int = 1, retain: bool = False) -> None:
        """On the loop: written to the socket now. While disconnected paho keeps QoS 1 messages and sends them
        on reconnect. From another thread: handed to the loop."""
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self.publish, topic, payload, qos, retain)
            return
        if self._connecting:
            self._held.append((topic, payload, qos, retain))
            return
        if isinstance(payload, dict):
            payload = fastjson.dumps(payload)
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s: %s (queued for reconnect if QoS>0)", topic, mqtt.error_string(info.rc))
        self._flush()

    async def aclose(self) -> None:
        """Send what is queued, disconnect cleanly, stop the supervisor."""
        self._closing = True
        if self._sock is not None:
            deadline = self._loop.time() + CLOSE_GRACE_S
            while self._client.want_write() and self._sock is not None and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
            self._client.disconnect()  # writes DISCONNECT and closes the socket (_socket_close)
            self._flush()
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self._forget_socket()

    # ---- the loop's side of paho ---------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closing:
            self._lost.clear()
            self._connecting = True
            try:
                await asyncio.to_thread(self._client.reconnect)  # blocking: DNS, TCP, TLS handshake
            except (OSError, ssl.SSLError, ValueError) as e:
                log.warning("cannot reach broker %s:%d (%s); retrying in %d s", self.host, self.port, e, delay)
                self._release_held()  # paho keeps them (QoS 1) until a connection takes them
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            sock = self._client.socket()
            if sock is None:  # closed again before we got it
                self._release_held()
                continue
            self._sock = sock
            self._loop.add_reader(sock, self._readable)
            self._release_held()  # behind the CONNECT reconnect() queued
            self._flush()
            while not self._lost.is_set():
                try:
                    await asyncio.wait_for(self._lost.wait(), MISC_EVERY_S)
                except TimeoutError:
                    self._client.loop_misc()  # keepalive pings; a dead broker closes the socket here
                    self._flush()
            if self.subscribed.is_set():
                delay = RECONNECT_MIN_S  # it was up: the next attempt starts from the short delay
            else:  # refused or dropped before subscribing (e.g. a bad login): back off
                delay = min(delay * 2, RECONNECT_MAX_S)
            self.subscribed.clear()
            if not self._closing:
                await asyncio.sleep(delay)

    def _release_held(self) -> None:
        self._connecting = False
        held, self._held = self._held, []
        for args in held:
            self.publish(*args)

    def _readable(self) -> None:
        self._client.loop_read()
        # TLS may hold decrypted bytes the socket no longer signals
        while self._sock is not None and isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            self._client.loop_read()
        self._flush()

    def _writable(self) -> None:
        self._client.loop_write()
        self._flush()

    def _flush(self) -> None:
        """Write what paho queued (PUBACKs, SUBSCRIBE, publishes); leave the rest to add_writer."""
        if self._sock is None:
            return
        if self._client.want_write():
            self._client.loop_write()
        if self._sock is None:
            return
        if self._client.want_write():
            self._loop.add_writer(self._sock, self._writable)
        else:
            self._loop.remove_writer(self._sock)

    def _forget_socket(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
            self._sock = None
        self._lost.set()

    # ---- paho callbacks: on the loop, except _socket_open (in the connecting thread) ---------------------
    def _socket_close(self, client, userdata, sock) -> None:
        if sock is self._sock:  # a connection the loop watched: stop watching before the descriptor closes
            self._forget_socket()

    def _socket_open(self, client, userdata, sock) -> None:
        # Without TCP_NODELAY, Nagle + delayed ACK add 40-90 ms to every QoS 1 round trip.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):  # websocket wrappers and the like
            pass

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("connected to broker %s:%d", self.host, self.port)
        # Subscribing here renews the subscriptions after every reconnect (clean session forgets them).
        client.subscribe(self._topics)

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()
        if reason_code.is_failure:
            log.warning("disconnected from broker: %s; reconnecting", reason_code)

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes[:2] if rc.is_failure]  # requests and manifests: required
        if failed:
            log.error("broker refused subscriptions %s: %s", [t for t, _ in self._topics], failed)
            return
        # the fleet view's topics: a refusal degrades the dashboard, it is not fatal
        for (topic, _), rc in zip(self._topics[2:], reason_codes[2:], strict=False):
            if rc.is_failure:
                log.warning("broker refused %s (%s): the dashboard will miss it", topic, rc)
        log.info("subscribed to %s", ", ".join(t for t, _ in self._topics))
        self.subscribed.set()

    def _message(self, client, userdata, msg) -> None:
        try:
            self._on_message(msg.topic, msg.payload)
        except Exception:  # inside paho's read: an exception would leave its packet state half done
            log.exception("handling a message on %s failed", msg.topic)
