"""A short-lived MQTT client for the CLI: connect (with the fleet's login when there is one),
subscribe, hand messages over a queue, publish."""
import queue
import secrets
import socket
import threading

import paho.mqtt.client as mqtt

from bridge import fastjson
from bridge.address import join_host_port

CONNACK_WAIT_S = 5.0   # a broker that accepted the TCP connection answers CONNECT at once


class BrokerUnreachable(Exception):
    pass


def json_object(payload):
    """A message's JSON object, or None for anything else: not JSON, not an object, nested too deeply to read.
    Whatever another client published on a topic we listen to, a command goes on."""
    try:
        value = fastjson.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Listener:
    """Subscribed to `topics` on host:port; messages arrive in `.inbox` as (topic, payload, retained).
    `login` is (user, password) or None. Raises BrokerUnreachable when the broker cannot be reached
    or refuses the login, with a message that says which."""

    def __init__(self, host, port, topics, name="listen", login=None):
        self.inbox = queue.Queue()
        self._acked = threading.Event()
        self._refused, self._connected = None, False
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wisp-cli-{name}-{secrets.token_hex(3)}")
        if login:
            self.client.username_pw_set(*login)
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload, bool(m.retain)))
        self.client.on_connect = lambda c, u, f, rc, p: self._on_connect(rc, topics)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_disconnect = lambda *a: self._acked.set()   # closed before any CONNACK: stop waiting
        at = join_host_port(host, port)
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as e:
            raise BrokerUnreachable(f"cannot reach the broker at {at}: {e}") from None
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait per message
        self.client.loop_start()
        self._acked.wait(CONNACK_WAIT_S)
        if self._refused or not self._connected:
            self.close()
        if self._refused:
            who = f"the login '{login[0]}'" if login else "an anonymous client"
            raise BrokerUnreachable(f"the broker at {at} refused {who}: {self._refused}"
                                    + ("" if login else " (a fleet broker needs --fleet DIR or "
                                       "WISP_BROKER_USER/WISP_BROKER_PASSWORD)"))
        if not self._connected:   # something listens there, but it does not speak MQTT to us
            raise BrokerUnreachable(f"no MQTT answer from {at} (not an MQTT broker, or a TLS-only "
                                    f"listener? the CLI speaks plain MQTT)")

    def _on_connect(self, reason, topics):
        if reason.is_failure:
            self._refused = str(reason)
            self.client.disconnect()   # do not retry a refused login forever in the background
        else:
            self._connected = True
            if topics:
                self.client.subscribe([(t, 1) for t in topics])
        self._acked.set()

    def wait_subscribed(self, timeout_s=CONNACK_WAIT_S):
        """True once the broker confirmed the subscriptions (retained messages follow it)."""
        return self._subscribed.wait(timeout_s)

    def get(self, timeout_s):
        """The next message, or None after timeout_s."""
        try:   # a --timeout of years waits as long as the platform's clock allows, not an OverflowError
            return self.inbox.get(timeout=min(max(0.0, timeout_s), threading.TIMEOUT_MAX))
        except queue.Empty:
            return None

    def publish(self, topic, payload, qos=1):
        self.client.publish(topic, payload, qos=qos)

    def close(self):
        self.client.disconnect()   # before loop_stop: the loop sends DISCONNECT and ends at once
        self.client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
