"""`wisp devices`: every device the broker knows, from the retained status and manifest topics, and every bridge,
from its retained presence (wisp/bridge/<name>/status)."""
import time

from bridge import protocol
from tools.listen import Listener, json_object

FIRST_WAIT_S = 1.0   # retained messages follow the SUBACK at once; none by then means no devices
QUIET_S = 0.3        # the retained burst is over when nothing arrived for this long
MAX_WAIT_S = 5.0     # a broker with thousands of devices still answers in bounded time


def collect(host, port, login=None, bridges=None):
    """{device id: {"state", "fw", "board", "boots", "pins"}} from what the broker retains; and into `bridges`,
    when given, {bridge name: {"state", "tiers", "since"}}."""
    devices = {}
    bridges = {} if bridges is None else bridges
    start = last = time.monotonic()
    topics = [protocol.every_device(protocol.STATUS), protocol.every_device(protocol.MANIFEST), protocol.EVERY_BRIDGE]
    with Listener(host, port, topics, name="devices", login=login) as listener:
        while True:
            now = time.monotonic()
            wait = (start + FIRST_WAIT_S if last == start else last + QUIET_S) - now
            msg = listener.get(min(wait, start + MAX_WAIT_S - now))
            if msg is None:
                break
            last = time.monotonic()
            topic, payload, _retained = msg
            if _bridge(topic, payload, bridges):
                continue
            parsed = protocol.parse(topic)
            if parsed is None or len(parsed[1]) != 1:
                continue
            dev_id, (kind,) = parsed
            dev = devices.setdefault(dev_id, {"state": "?", "fw": "", "board": "", "boots": None, "pins": {}})
            body = json_object(payload)
            if body is None:
                continue
            if kind == protocol.STATUS:
                dev["state"] = str(body.get("state", "?"))
                for key in ("fw", "board", "boots"):
                    if body.get(key) is not None:
                        dev[key] = body[key]
            elif isinstance(body.get("pins"), dict):
                dev["pins"] = {str(n): (p.get("mode") if isinstance(p, dict) else "?")
                               for n, p in body["pins"].items()}
                dev["fw"] = dev["fw"] or body.get("fw", "")
    return devices


def _bridge(topic, payload, bridges):
    """Notes a bridge's presence in `bridges`; False for a device topic."""
    name = protocol.parse_bridge(topic)
    if name is None:
        return False
    body = json_object(payload)
    if body is not None:
        tiers = body.get("tiers") if isinstance(body.get("tiers"), list) else []
        since = body.get("since") if isinstance(body.get("since"), int) else None
        bridges[name] = {"state": str(body.get("state", "?")), "tiers": [str(t) for t in tiers], "since": since}
    return True


def bridge_table(bridges):
    rows = [("BRIDGE", "STATE", "SINCE (UTC)", "TIERS")]
    for name in sorted(bridges):
        b = bridges[name]
        up = b["since"] and b["state"] == "online"
        since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(b["since"])) if up else "-"
        rows.append((name, b["state"], since, " ".join(b["tiers"]) or "-"))
    return _columns(rows)


def _columns(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows)


def table(devices):
    rows = [("DEVICE", "STATE", "FIRMWARE", "BOARD", "BOOTS", "PINS")]
    for dev_id in sorted(devices):
        d = devices[dev_id]
        pins = " ".join(f"{n}:{m}" for n, m in sorted(d["pins"].items())) or "-"
        rows.append((dev_id, d["state"], str(d["fw"] or "-"), str(d["board"] or "-"),
                     "-" if d["boots"] is None else str(d["boots"]), pins))
    return _columns(rows)
