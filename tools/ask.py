"""`wisp ask` and `wisp cmd`: send one request to a device over MQTT and wait for its answer."""
import json
import secrets
import time

from bridge import protocol
from tools.listen import BrokerUnreachable, Listener, json_object

STATUS_WAIT_S = 2.0
NO_BRIDGE_ANSWER = "no answer from the bridge"  # what the device says when no bridge answered a round
STALE = "'ts' must be the current Unix time"    # the device's refusal of a signed message dated off its clock
LOG_WAIT_S = 4.0   # the device sends new log lines every 2 s (firmware/wisp/logfeed.py FEED_MS)


class AskError(Exception):
    exit_code = 3  # `wisp ask`/`cmd`: no answer (broker unreachable, device unknown or offline, timeout)


class TooBig(AskError):
    """A request the device would not read: it answers one over its message limit without the request's id,
    so the caller would wait out its timeout for an answer that never comes."""
    exit_code = 2  # bad input, refused before it is sent


def ask(host, port, dev_id, text, timeout_s=120.0, login=None, progress=None, key=None, notes=None):
    """Publish an ask and wait for the reply with the same id. Returns the reply dict.
    progress(text), when given, hears what the ask is waiting for: the device, the model (the
    device's llm/req of each round carries the ask's id), the tool calls the model made.
    key: sign the ask (a signed-only device takes nothing else; others ignore the signature).
    notes: a list that gets what the user should know about a refusal (this host's clock is off)."""
    if len(text) > protocol.MAX_ASK_TEXT:
        raise TooBig(f"the text is {len(text)} characters; the device takes at most {protocol.MAX_ASK_TEXT}")
    ask_id = secrets.token_hex(4)
    msg = {"v": 1, "id": ask_id, "text": text}
    if key:
        from bridge.signing import sign_message
        msg["ts"] = int(time.time())
        payload = sign_message(key, msg)
    else:
        # UTF-8, as a signed one goes: escaped, an emoji takes 12 of MAX_PAYLOAD's bytes instead of 4
        payload = json.dumps(msg, ensure_ascii=False).encode()
    return _request(host, port, dev_id, protocol.ASK, payload, protocol.REPLY, ask_id, timeout_s, login, progress,
                    signed_ts=msg.get("ts"), notes=notes)


def command(host, port, dev_id, tool, args, key=None, timeout_s=30.0, login=None, notes=None):
    """Run one tool on the device with no LLM; signed with the device's key when one is given
    (a provisioned device refuses unsigned commands). Returns the cmd/res dict. notes: as for ask()."""
    cmd_id = secrets.token_hex(4)
    # ts in whole seconds: an ESP32's floats are single precision, 1.7e9 s to within ~2 minutes
    msg = {"v": 1, "id": cmd_id, "tool": tool, "args": args, "ts": int(time.time())}
    if key:
        from bridge.signing import sign_message
        payload = sign_message(key, msg)
    else:
        payload = json.dumps(msg, ensure_ascii=False).encode()
    return _request(host, port, dev_id, protocol.CMD, payload, protocol.CMD_RES, cmd_id, timeout_s, login,
                    signed_ts=msg["ts"] if key else None, notes=notes)


def _request(host, port, dev_id, kind, payload, answer_kind, req_id, timeout_s, login, progress=None,
             signed_ts=None, notes=None):
    why = protocol.unread(payload)
    if why:
        raise TooBig(f"the {kind} is {why}")
    status_topic, answer_topic = protocol.topic(dev_id, protocol.STATUS), protocol.topic(dev_id, answer_kind)
    log_topic = protocol.topic(dev_id, protocol.LOG)
    topics = [answer_topic, status_topic, protocol.EVERY_BRIDGE]
    if progress:
        topics += [protocol.topic(dev_id, protocol.LLM_REQ), protocol.topic(dev_id, protocol.LLM_RES)]
    if signed_ts is not None:
        topics.append(log_topic)   # the device's clock, should it refuse the time this host signed with
    try:
        listener = Listener(host, port, topics, name=req_id, login=login)
    except BrokerUnreachable as e:
        raise AskError(str(e)) from None
    bridges = {}  # bridge name -> its presence state, from wisp/bridge/+/status (retained, then live)
    with listener:
        status = _wait_status(listener, status_topic, bridges)
        if status is None:
            raise AskError(f"no device '{dev_id}' on {host}:{port} (it never published a status)")
        if status.get("state") != "online":
            raise AskError(f"device '{dev_id}' is offline")
        listener.publish(protocol.topic(dev_id, kind), payload)
        if progress:
            progress(f"waiting for {dev_id}")
        answer = _wait_answer(listener, answer_topic, status_topic, dev_id, req_id, timeout_s, progress, bridges)
        said = answer.get("result") if kind == protocol.CMD else answer.get("text")
        if signed_ts is not None and notes is not None and isinstance(said, str) and STALE in said:
            notes.append(_clock_note(signed_ts, _device_clock(listener, log_topic)))
    if isinstance(answer.get("text"), str) and NO_BRIDGE_ANSWER in answer["text"]:
        answer["text"] += " " + _bridges_said(bridges)
    return answer


def _device_clock(listener, log_topic):
    """The device's clock, in Unix seconds, from the log line of its refusal (the device logs it and
    sends it on wisp/<id>/log within seconds), or None when none came."""
    deadline = time.monotonic() + LOG_WAIT_S
    while (msg := listener.get(deadline - time.monotonic())) is not None:
        body = json_object(msg[1]) if msg[0] == log_topic else None
        for line in (body or {}).get("lines") or []:
            if isinstance(line, list) and len(line) == 2 and isinstance(line[0], int) and STALE in str(line[1]):
                return line[0]
    return None


def _clock_note(signed_ts, device_ts):
    """What the user should do when the device refused the time this host signed with."""
    def utc(t):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    fix = "set this host's clock (`timedatectl set-ntp true`), or the device's if it is the one that is wrong"
    if device_ts is None:
        return (f"the device refused the time this host signed with ({utc(signed_ts)}): this host's clock and the "
                f"device's disagree by more than the device allows; check this host's clock first: {fix}")
    off = signed_ts - device_ts
    span = f"{round(abs(off) / 60)} min" if abs(off) >= 90 else f"{abs(off)} s"
    way = "ahead of" if off > 0 else "behind"
    return (f"this host's clock is {span} {way} the device's (this host: {utc(signed_ts)}, the device: "
            f"{utc(device_ts)}), so the device refused the signed message as dated wrong: {fix}")


def _bridges_said(bridges):
    online = sorted(name for name, state in bridges.items() if state == "online")
    if not online:
        return f"No bridge is online on this broker ({protocol.EVERY_BRIDGE} names none)."
    return f"Bridge(s) online: {', '.join(online)}; see their logs."


def _bridge_seen(msg, bridges):
    """Notes a bridge's presence message in `bridges`; False for any other message."""
    name = protocol.parse_bridge(msg[0])
    if name is None:
        return False
    body = json_object(msg[1]) or {}
    bridges[name] = body.get("state") if isinstance(body.get("state"), str) else "?"
    return True


def _wait_status(listener, status_topic, bridges):
    deadline = time.monotonic() + STATUS_WAIT_S
    while (msg := listener.get(deadline - time.monotonic())) is not None:
        if _bridge_seen(msg, bridges):
            continue
        if msg[0] == status_topic:
            return json_object(msg[1]) or {}
    return None


def _wait_answer(listener, topic, status_topic, dev_id, req_id, timeout_s, progress, bridges):
    """The answer with our id; gives up at once when the device goes offline meanwhile. `bridges` hears
    every bridge presence that arrives meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (msg := listener.get(deadline - time.monotonic())) is not None:
        if _bridge_seen(msg, bridges):
            continue
        got, payload, _retained = msg
        body = json_object(payload)
        if body is None:
            continue
        if got == status_topic and body.get("state") == "offline":
            raise AskError(f"device '{dev_id}' went offline before it answered")
        if got == topic and body.get("id") == req_id:
            return body
        if progress and str(body.get("id", "")).startswith(req_id + "."):  # llm/req ids: <ask id>.<nonce>
            for line in _progress_lines(got, body):
                waiting = line.endswith("waiting for the model") and "online" not in bridges.values()
                progress(line + (" (no bridge is online)" if waiting else ""))
    raise AskError(f"no answer on {topic} within {timeout_s:g} s")


def _progress_lines(topic, body):
    rnd = body.get("round", 0) + 1 if isinstance(body.get("round"), int) else "?"
    if topic.endswith("/llm/req"):
        return [f"round {rnd}: waiting for the model"]
    lines = []
    for call in body.get("calls") or []:
        if isinstance(call, dict):
            args = call.get("args") if isinstance(call.get("args"), dict) else {}
            lines.append(f"round {rnd}: {call.get('tool')}({', '.join(f'{k}={v}' for k, v in args.items())})")
    return lines
