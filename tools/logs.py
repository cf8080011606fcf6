"""`wisp logs <id> [-f]`: a device's status, its log ring and its events over MQTT; -f follows
new log lines and events live. The device sends its ring when asked on wisp/<id>/log/get and new
lines on wisp/<id>/log as they are written (firmware/wisp/logfeed.py)."""
import json
import time

from bridge import protocol
from tools.listen import Listener

RETAINED_WAIT_S = 1.0   # the retained status arrives right after subscribing
RING_WAIT_S = 3.0       # an online device answers log/get within a second or two
CLOCK_SET_AFTER = 1704067200   # before 2024 the device's clock was not set: no time to show


def _clock(t):
    if isinstance(t, (int, float)) and t >= CLOCK_SET_AFTER:
        return time.strftime("%H:%M:%S", time.localtime(t))
    return "--:--:--"


def describe(topic, payload):
    """Readable lines for a status, log or event message."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return [f"{_clock(time.time())}  {topic.rsplit('/', 1)[-1]}: (not JSON) {payload[:80]!r}"]
    now = _clock(time.time())
    if topic.endswith("/status"):
        state = body.get("state", "?")
        extra = f" (firmware {body['fw']}, boot {body.get('boots', '?')})" if state == "online" and "fw" in body else ""
        return [f"{now}  status: {state}{extra}"]
    if topic.endswith("/log"):
        lines = body.get("lines") if isinstance(body.get("lines"), list) else []
        return [f"{_clock(line[0])}  log: {line[1]}" for line in lines
                if isinstance(line, list) and len(line) == 2 and isinstance(line[1], str)]
    return [f"{now}  {body.get('kind', 'event')}: {body.get('text', '')}"]


def follow(host, port, dev_id, out, follow=False, duration_s=None, login=None):
    """Print the device's state and log ring, then (follow) its new log lines and events until
    interrupted or duration_s. Returns 0, or 1 when the device is unknown or offline."""
    status, ring_seen = None, False
    topics = [protocol.topic(dev_id, kind) for kind in (protocol.STATUS, protocol.EVENT, protocol.LOG)]
    with Listener(host, port, topics, name="logs", login=login) as listener:
        listener.wait_subscribed()
        listener.publish(protocol.topic(dev_id, protocol.LOG_GET), b"{}")
        start = time.monotonic()
        while True:
            if follow:
                left = None if duration_s is None else start + duration_s - time.monotonic()
            elif status is None:
                left = start + RETAINED_WAIT_S - time.monotonic()
            elif "online" in status and not ring_seen:
                left = start + RING_WAIT_S - time.monotonic()
            else:
                break
            if left is not None and left <= 0:
                break
            msg = listener.get(0.5 if left is None else min(left, 0.5))
            if msg is None:
                continue
            topic, payload, retained = msg
            lines = describe(topic, payload)
            if topic.endswith("/status"):
                status = lines[0]
            if topic.endswith("/log") and b'"ring"' in payload:
                ring_seen = True
            for line in lines:
                out.write(("(retained) " if retained else "") + line + "\n")
            out.flush()
    if status is None:
        out.write(f"wisp: the broker knows no device '{dev_id}' (it never published a status)\n")
        return 1
    if "offline" in status:
        out.write(f"wisp: device '{dev_id}' is offline; `wisp logs {dev_id} -f` shows it coming back\n")
        return 1
    return 0
