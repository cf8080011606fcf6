"""The bridge's MQTT connection: paho-mqtt runs the network loop in its own thread; each received message
crosses into asyncio only through `loop.call_soon_threadsafe`, so no asyncio object is touched from paho's thread.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt

from bridge import protocol

log = logging.getLogger("wisp.bridge.mqtt")

REQ_TOPIC = protocol.every_device(protocol.LLM_REQ)
SHARED_REQ_TOPIC = protocol.SHARED_GROUP + REQ_TOPIC  # several bridges split the requests between them
MANIFEST_TOPIC = protocol.every_device(protocol.MANIFEST)
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
MAX_INFLIGHT = 100  # paho's default of 20 unacked QoS 1 messages would queue replies of concurrent requests


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
        c.on_connect = self._connected
        c.on_connect_fail = self._connect_failed
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subscribed
        c.on_message = self._message
        self._client = c

    def start(self) -> None:
        """Connect in the background; paho retries with capped backoff until the broker answers."""
        self._client.connect_async(self.host, self.port, KEEPALIVE_S)
        self._client.loop_start()

    def publish(self, topic: str, payload: dict | bytes, qos: int = 1, retain: bool = False) -> None:
        # paho's publish is thread-safe; while disconnected it keeps QoS 1 messages and sends them on reconnect
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s: %s (queued for reconnect if QoS>0)", topic, mqtt.error_string(info.rc))

    def close(self) -> None:
        """Send what is queued, disconnect cleanly and stop paho's thread."""
        self._client.disconnect()
        self._client.loop_stop()

    # ---- paho callbacks: they run in paho's thread --------------------------------------------------
    def _to_loop(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

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

    def _connect_failed(self, client, userdata) -> None:
        log.warning("cannot reach broker %s:%d; retrying (backoff up to %d s)",
                    self.host, self.port, RECONNECT_MAX_S)

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        self._to_loop(self.subscribed.clear)
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
        self._to_loop(self.subscribed.set)

    def _message(self, client, userdata, msg) -> None:
        self._to_loop(self._on_message, msg.topic, msg.payload)
