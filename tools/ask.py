"""`wisp ask` and `wisp cmd`: send one request to a device over MQTT and wait for its answer."""
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
    payload = json.dumps({"v": 1, "id": ask_id, "text": text}).encode()
    return _request(host, port, dev_id, "ask", payload, "reply", ask_id, timeout_s)


def command(host, port, dev_id, tool, args, key=None, timeout_s=30.0):
    """Run one tool on the device with no LLM; signed with the device's key when one is given
    (a provisioned device refuses unsigned commands). Returns the cmd/res dict."""
    cmd_id = secrets.token_hex(4)
    msg = {"v": 1, "id": cmd_id, "tool": tool, "args": args, "ts": int(time.time())}
    if key:
        from bridge.signing import sign_message
        payload = sign_message(key, msg)
    else:
        payload = json.dumps(msg).encode()
    return _request(host, port, dev_id, "cmd", payload, "cmd/res", cmd_id, timeout_s)


def _request(host, port, dev_id, suffix, payload, answer_suffix, req_id, timeout_s):
    inbox = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wisp-cli-" + req_id)
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload))
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, socket.error) as e:
        raise AskError(f"cannot reach the broker at {host}:{port}: {e}") from None
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait per message
    client.loop_start()
    try:
        client.subscribe([(f"wisp/{dev_id}/{answer_suffix}", 1), (f"wisp/{dev_id}/status", 1)])
        status = _wait_status(inbox, dev_id)
        if status is None:
            raise AskError(f"no device '{dev_id}' on {host}:{port} (it never published a status)")
        if status.get("state") != "online":
            raise AskError(f"device '{dev_id}' is offline")
        client.publish(f"wisp/{dev_id}/{suffix}", payload, qos=1)
        return _wait_answer(inbox, f"wisp/{dev_id}/{answer_suffix}", req_id, timeout_s)
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


def _wait_answer(inbox, topic, req_id, timeout_s):
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            got, payload = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if got != topic:
                continue
            try:
                answer = json.loads(payload)
            except ValueError:
                continue
            if isinstance(answer, dict) and answer.get("id") == req_id:
                return answer
    except queue.Empty:
        raise AskError(f"no answer on {topic} within {timeout_s:.0f} s") from None
