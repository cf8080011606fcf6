"""`wisp logs <id> [-f]`: a device's status, its log ring and its events over MQTT; -f follows
new log lines and events live. The device sends its ring when asked on wisp/<id>/log/get and new
lines on wisp/<id>/log as they are written (firmware/wisp/logfeed.py)."""
import time

from bridge import protocol
from tools.listen import Listener, json_object

RETAINED_WAIT_S = 1.0   # the retained status arrives right after subscribing
RING_WAIT_S = 3.0       # an online device answers log/get within a second or two
CLOCK_SET_AFTER = 1704067200   # before 2024 the device's clock was not set: no time to show


def _clock(t):
    if isinstance(t, (int, float)) and t >= CLOCK_SET_AFTER:
        return time.strftime("%H:%M:%S", time.localtime(t))
    return "--:--:--"


def describe(topic, payload, retained=False, seen=None):
    """Readable lines for a status, log or event message. A retained message is from before this
    command started, so it carries no time (now would be wrong). seen: the (time, text) log lines
    printed so far; a line in it is not printed again (the ring asked for at the start and the next
    live batch may overlap), and the new ones are added."""
    body = json_object(payload)
    stamp = "(retained)" if retained else _clock(time.time())
    if not isinstance(body, dict):
        return [f"{stamp}  {topic.rsplit('/', 1)[-1]}: (not JSON) {payload[:80]!r}"]
    if topic.endswith("/status"):
        state = body.get("state", "?")
        extra = f" (firmware {body['fw']}, boot {body.get('boots', '?')})" if state == "online" and "fw" in body else ""
        return [f"{stamp}  status: {state}{extra}"]
    if topic.endswith("/log"):
        lines = body.get("lines") if isinstance(body.get("lines"), list) else []
        out = []
        for line in lines:
            if not (isinstance(line, list) and len(line) == 2 and isinstance(line[1], str)):
                continue
            key = (repr(line[0]), line[1])
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            out.append(f"{_clock(line[0])}  log: {line[1]}")
        return out
    return [f"{stamp}  {body.get('kind', 'event')}: {body.get('text', '')}"]


UNKNOWN = 3    # as `wisp ask`/`cmd` when no answer can come: the broker knows no such device
OFFLINE = 1


def follow(host, port, dev_id, out, follow=False, duration_s=None, login=None):
    """Print the device's state and log ring, then (follow) its new log lines and events until
    interrupted or duration_s. Returns 0, OFFLINE when the device is offline, UNKNOWN when the
    broker never heard of it."""
    status, ring_seen, printed = None, False, set()
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
            lines = describe(topic, payload, retained, printed)
            if topic.endswith("/status"):
                status = lines[0]
            if topic.endswith("/log") and b'"ring"' in payload:
                ring_seen = True
            for line in lines:
                out.write(line + "\n")
            out.flush()
    if status is None:
        out.write(f"wisp: the broker knows no device '{dev_id}' (it never published a status)\n")
        return UNKNOWN
    if "offline" in status:
        out.write(f"wisp: device '{dev_id}' is offline; `wisp logs {dev_id} -f` shows it coming back\n")
        return OFFLINE
    return 0
