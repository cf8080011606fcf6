"""`wisp logs <id> [-f]`: a device's status changes and events over MQTT, followed live with -f."""
import json
import time

from bridge import protocol
from tools.listen import Listener

RETAINED_WAIT_S = 1.0   # the retained status arrives right after subscribing


def _line(now, text):
    return time.strftime("%H:%M:%S", time.localtime(now)) + "  " + text


def describe(topic, payload):
    """One readable line for a status or event message; None for anything else."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"{topic.rsplit('/', 1)[-1]}: (not JSON) {payload[:80]!r}"
    if topic.endswith("/" + protocol.STATUS):
        state = body.get("state", "?")
        extra = f" (firmware {body['fw']}, boot {body.get('boots', '?')})" if state == "online" and "fw" in body else ""
        return f"status: {state}{extra}"
    return f"{body.get('kind', 'event')}: {body.get('text', '')}"


def follow(host, port, dev_id, out, follow=False, duration_s=None, login=None):
    """Print the device's state, then its events: until the retained burst is over, or (follow)
    until interrupted or duration_s. Returns 0, or 1 when the device is unknown or offline."""
    status = None
    status_topic = protocol.topic(dev_id, protocol.STATUS)
    topics = [status_topic, protocol.topic(dev_id, protocol.EVENT)]
    with Listener(host, port, topics, name="logs", login=login) as listener:
        start = time.monotonic()
        while True:
            if follow:
                left = None if duration_s is None else start + duration_s - time.monotonic()
            else:
                left = start + RETAINED_WAIT_S - time.monotonic()
            if left is not None and left <= 0:
                break
            msg = listener.get(0.5 if left is None else min(left, 0.5))
            if msg is None:
                continue
            topic, payload, retained = msg
            if topic == status_topic:
                status = describe(topic, payload)
            prefix = "(retained) " if retained else ""
            out.write(_line(time.time(), prefix + describe(topic, payload)) + "\n")
            out.flush()
            if not follow and retained and topic == status_topic:
                break
    if status is None:
        out.write(f"wisp: the broker knows no device '{dev_id}' (it never published a status)\n")
        return 1
    if "offline" in status:
        out.write(f"wisp: device '{dev_id}' is offline; `wisp logs {dev_id} -f` shows it coming back\n")
        return 1
    return 0
