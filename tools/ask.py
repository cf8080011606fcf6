"""`wisp ask` and `wisp cmd`: send one request to a device over MQTT and wait for its answer."""
import json
import secrets
import time

from tools.listen import BrokerUnreachable, Listener

STATUS_WAIT_S = 2.0


class AskError(Exception):
    pass


def ask(host, port, dev_id, text, timeout_s=120.0, login=None):
    """Publish an ask and wait for the reply with the same id. Returns the reply dict."""
    ask_id = secrets.token_hex(4)
    payload = json.dumps({"v": 1, "id": ask_id, "text": text}).encode()
    return _request(host, port, dev_id, "ask", payload, "reply", ask_id, timeout_s, login)


def command(host, port, dev_id, tool, args, key=None, timeout_s=30.0, login=None):
    """Run one tool on the device with no LLM; signed with the device's key when one is given
    (a provisioned device refuses unsigned commands). Returns the cmd/res dict."""
    cmd_id = secrets.token_hex(4)
    msg = {"v": 1, "id": cmd_id, "tool": tool, "args": args, "ts": int(time.time())}
    if key:
        from bridge.signing import sign_message
        payload = sign_message(key, msg)
    else:
        payload = json.dumps(msg).encode()
    return _request(host, port, dev_id, "cmd", payload, "cmd/res", cmd_id, timeout_s, login)


def _request(host, port, dev_id, suffix, payload, answer_suffix, req_id, timeout_s, login):
    status_topic, answer_topic = f"wisp/{dev_id}/status", f"wisp/{dev_id}/{answer_suffix}"
    try:
        listener = Listener(host, port, [answer_topic, status_topic], name=req_id, login=login)
    except BrokerUnreachable as e:
        raise AskError(str(e)) from None
    with listener:
        status = _wait_status(listener, status_topic)
        if status is None:
            raise AskError(f"no device '{dev_id}' on {host}:{port} (it never published a status)")
        if status.get("state") != "online":
            raise AskError(f"device '{dev_id}' is offline")
        listener.publish(f"wisp/{dev_id}/{suffix}", payload)
        return _wait_answer(listener, answer_topic, status_topic, dev_id, req_id, timeout_s)


def _json(payload):
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _wait_status(listener, status_topic):
    deadline = time.monotonic() + STATUS_WAIT_S
    while (msg := listener.get(deadline - time.monotonic())) is not None:
        if msg[0] == status_topic:
            return _json(msg[1]) or {}
    return None


def _wait_answer(listener, topic, status_topic, dev_id, req_id, timeout_s):
    """The answer with our id; gives up at once when the device goes offline meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (msg := listener.get(deadline - time.monotonic())) is not None:
        got, payload, _retained = msg
        body = _json(payload)
        if got == status_topic and body is not None and body.get("state") == "offline":
            raise AskError(f"device '{dev_id}' went offline before it answered")
        if got == topic and body is not None and body.get("id") == req_id:
            return body
    raise AskError(f"no answer on {topic} within {timeout_s:.0f} s")
