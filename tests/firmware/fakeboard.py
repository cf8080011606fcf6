# Test helpers on the MicroPython side: a device built on the simulated board with an
# in-memory link that records what the device publishes (the transport, not the protocol).
import asyncio
import json

from wisp import pins as pins_mod
from wisp.device import Device
from wisp.hal.sim import Board

PINS = {"porch_light": {"pin": 5, "mode": "out"}, "fan": {"pin": 18, "mode": "out"},
        "door": {"pin": 4, "mode": "in", "pull": "up"}}


class RecordingLink:
    def __init__(self):
        self.sent = []        # (topic, payload str, retain, qos)
        self.pieces = {}      # topic -> the pieces of the last payload sent to it in pieces
        self.up = True
        self.on_publish = None
        self.connects = 1     # as MQTTClient counts them (the restart button's guard reads it)

    async def publish(self, topic, payload, retain=False, qos=0, wait_ms=0):
        if not self.up:
            return False
        if callable(payload):  # a payload streamed in pieces (the manifest), as MQTTClient takes it
            payload = payload()
        if not isinstance(payload, (str, bytes)):
            self.pieces[topic] = list(payload)
            payload = "".join(p if isinstance(p, str) else p.decode() for p in self.pieces[topic])
        if isinstance(payload, bytes):
            payload = payload.decode()
        self.sent.append((topic, payload, retain, qos))
        if self.on_publish:
            self.on_publish(topic, payload)
        return True

    def on(self, topic):
        return [json_or_text(p) for t, p, _r, _q in self.sent if t == topic]


def json_or_text(p):
    try:
        return json.loads(p)
    except ValueError:
        return p


def make_device(pins=PINS, dev_id="t1", extra=None):
    """The one device builder of the MicroPython tests: a Device on the simulated board (which
    counts resets instead of ending the process) with a RecordingLink. extra: more config.
    dev.logged: what pin setup logged."""
    logged = []
    board = Board()
    board.exit_on_reset = False
    cfg = {"id": dev_id, "broker": {"host": "x", "port": 1}, "pins": pins}
    cfg.update(extra or {})
    dev = Device(cfg, board, pins_mod.setup(pins, board, logged.append))
    dev.link = RecordingLink()
    dev.logged = logged
    return dev


def manifest(dev):
    """The manifest the device publishes, decoded."""
    return json.loads(dev.manifest())


def run(coro):
    return asyncio.run(coro)
