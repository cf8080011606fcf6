"""`wisp ask`: send one request in words to a device over MQTT and print its reply."""
import json
import queue
import secrets
import socket
import time

import paho.mqtt.client as mqtt

STATUS_WAIT_S = 2.0


class AskError(Exception):
    pass


def ask(host, port, dev_id, text, timeout_s=120.0):
    """Publish an ask and wait for the reply with the same id. Returns the reply dict."""
    ask_id = secrets.token_hex(4)
    inbox = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wisp-cli-" + ask_id)
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload))
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, socket.error) as e:
        raise AskError(f"cannot reach the broker at {host}:{port}: {e}") from None
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait per message
    client.loop_start()
    try:
        client.subscribe([(f"wisp/{dev_id}/reply", 1), (f"wisp/{dev_id}/status", 1)])
        status = _wait_status(inbox, dev_id)
        if status is None:
            raise AskError(f"no device '{dev_id}' on {host}:{port} (it never published a status)")
        if status.get("state") != "online":
            raise AskError(f"device '{dev_id}' is offline")
        client.publish(f"wisp/{dev_id}/ask", json.dumps({"v": 1, "id": ask_id, "text": text}), qos=1)
        return _wait_reply(inbox, dev_id, ask_id, timeout_s)
    finally:
        client.loop_stop()
        client.disconnect()


def _wait_status(inbox, dev_id):
    try:
        while True:
            topic, payload = inbox.get(timeout=STATUS_WAIT_S)
            if topic == f"wisp/{dev_id}/status":
                try:
                    return json.loads(payload)
                except ValueError:
                    return {}
    except queue.Empty:
        return None


def _wait_reply(inbox, dev_id, ask_id, timeout_s):
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            topic, payload = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if topic != f"wisp/{dev_id}/reply":
                continue
            try:
                reply = json.loads(payload)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("id") == ask_id:
                return reply
    except queue.Empty:
        raise AskError(f"no reply from '{dev_id}' within {timeout_s:.0f} s") from None
