"""Shared test plumbing: one real mosquitto per test run, started on first use, and an MQTT probe."""
import atexit
import json
import queue
import socket
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from tools import broker as brokers

_broker = None
_postgres = None
_lock = threading.Lock()


def session_broker():
    """The test run's own mosquitto on a free loopback port (tests always use the real broker)."""
    global _broker
    with _lock:
        if _broker is None:
            _broker = brokers.start_mosquitto(tempfile.mkdtemp(prefix="wisp-mosq-"))
            atexit.register(_broker.stop)
        return _broker


def session_postgres():
    """The test run's own PostgreSQL (initdb + pg_ctl) on a free loopback port; tests make their own databases."""
    global _postgres
    with _lock:
        if _postgres is None:
            from tools.postgres import start_postgres
            _postgres = start_postgres(tempfile.mkdtemp(prefix="wisp-pg-"))
            atexit.register(_postgres.stop, remove=True)
        return _postgres


class Probe:
    """A paho client that records what arrives, for asserting on MQTT traffic."""

    def __init__(self, host, port, topics=("wisp/#",), client_id=None, login=None):
        self.messages = queue.Queue()
        self.seen = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "")
        if login:  # (user, password): a broker that admits no anonymous client (ejabberd)
            self.client.username_pw_set(*login)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port, keepalive=30)
        # without TCP_NODELAY every QoS 1 exchange waits ~40 ms on Nagle + delayed ACK
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        if not subscribed.wait(5):
            raise TimeoutError("probe subscription not acknowledged")

    def publish(self, topic, payload, retain=False, qos=1):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def wait_for(self, topic, match=None, timeout=10.0):
        """Next message on `topic` (JSON-decoded when possible) for which match(payload) is true."""
        for t, payload in self.seen:
            if t == topic and (match is None or match(payload)):
                self.seen.remove((t, payload))
                return payload
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing matching on {topic} within {timeout} s")
            try:
                t, raw, _retain = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            payload = decode(raw)
            if t == topic and (match is None or match(payload)):
                return payload
            self.seen.append((t, payload))

    def drain(self, seconds):
        """Everything that arrives within `seconds`, as (topic, payload) pairs."""
        out = list(self.seen)
        self.seen.clear()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                t, raw, _retain = self.messages.get(timeout=left)
                out.append((t, decode(raw)))
            except queue.Empty:
                break
        return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class Check:
    """The verdicts of an optional check against real software (tools/*_check.py), printed as they come."""

    def __init__(self):
        self.failed = 0

    def __call__(self, ok, what, got=None):
        print(("ok        " if ok else "MISMATCH  ") + what + ("" if ok else f": got {got!r}"), flush=True)
        self.failed += not ok
        return ok


def retained(host, port, topics, wait_s=1.0, login=None):
    """{topic: payload} of the non-empty retained messages the broker gives a new subscriber to `topics`."""
    got = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if login:
        c.username_pw_set(*login)
    c.on_message = lambda _c, _u, m: got.__setitem__(m.topic, m.payload) if m.retain and m.payload else None
    c.connect(host, port)
    c.loop_start()
    c.subscribe([(t, 1) for t in topics])
    time.sleep(wait_s)
    c.loop_stop()
    c.disconnect()
    return got


def until(check, timeout=10.0, what="the condition", every=0.05):
    """Poll `check()` until it returns something true, and return that; TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(every)


def decode(raw):
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # fuzz tests send deeply nested JSON on purpose
        return raw.decode(errors="replace")


def firmware_limit(name):
    """A device limit as firmware/wisp/limits.py states it (`NAME = const(N)`): the one source."""
    import re
    text = (Path(__file__).resolve().parents[1] / "firmware" / "wisp" / "limits.py").read_text()
    found = re.search(r"^%s\s*=\s*const\((\d+)\)" % re.escape(name), text, re.M)
    if not found:
        raise KeyError(name)
    return int(found.group(1))
