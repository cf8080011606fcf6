"""A short-lived MQTT listener for the CLI: connect, subscribe, hand messages over a queue."""
import queue
import secrets
import socket

import paho.mqtt.client as mqtt


class BrokerUnreachable(Exception):
    pass


class Listener:
    """Subscribed to `topics` on host:port; messages arrive in `.inbox` as (topic, payload, retained)."""

    def __init__(self, host, port, topics, name="listen"):
        self.inbox = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wisp-cli-{name}-{secrets.token_hex(3)}")
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload, bool(m.retain)))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as e:
            raise BrokerUnreachable(f"cannot reach the broker at {host}:{port}: {e}") from None
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()

    def get(self, timeout_s):
        """The next message, or None after timeout_s."""
        try:
            return self.inbox.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def close(self):
        self.client.disconnect()   # before loop_stop: the loop sends DISCONNECT and ends at once
        self.client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
