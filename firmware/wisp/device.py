# The device's shared context: config, board, named pins and the MQTT link, plus the
# announcements every connect owes the broker (status, manifest, pin states).
import json

import hashlib
import binascii

from wisp import VERSION, tools
from wisp.log import log

BOOTS_FILE = "boots"


def _count_boot():
    try:
        with open(BOOTS_FILE) as f:
            n = int(f.read()) + 1
    except (OSError, ValueError):
        n = 1
    try:
        with open(BOOTS_FILE, "w") as f:
            f.write(str(n))
    except OSError:
        pass
    return n


class Device:
    def __init__(self, config, board, pins):
        self.config = config
        self.board = board
        self.pins = pins
        self.id = config["id"]
        self.prefix = "wisp/%s/" % self.id
        self.link = None  # set by main once the MQTT client exists
        self.boots = _count_boot()
        self._manifest = None
        self.manifest_hash = None
        self.manifest()  # fixes manifest_hash, which every llm/req carries

    def topic(self, suffix):
        return self.prefix + suffix

    def status_payload(self, state):
        if state == "offline":
            return json.dumps({"v": 1, "state": "offline"})
        return json.dumps({"v": 1, "state": state, "fw": VERSION, "boots": self.boots, "board": self.board.name})

    def manifest(self):
        """Built once: tools (from the registry), named pins, limits and a hash of them."""
        if self._manifest is None:
            from wisp import limits
            body = {"tools": tools.schemas(self),
                    "pins": {n: {"mode": p.mode} for n, p in self.pins.items()}}
            digest = hashlib.sha256(json.dumps(body)).digest()
            self.manifest_hash = binascii.hexlify(digest[:4]).decode()
            body.update({"v": 1, "id": self.id, "fw": VERSION, "hash": self.manifest_hash,
                         "limits": {"rounds": limits.MAX_ROUNDS, "calls": limits.MAX_CALLS_PER_ROUND}})
            self._manifest = json.dumps(body)
        return self._manifest

    async def publish_json(self, suffix, obj, retain=False, qos=1):
        return await self.link.publish(self.topic(suffix), json.dumps(obj), retain, qos)

    async def announce(self):
        """Everything retained the broker should hold after each (re)connect."""
        await self.link.publish(self.topic("status"), self.status_payload("online"), True, 1)
        await self.link.publish(self.topic("manifest"), self.manifest(), True, 1)
        for name in self.pins:
            await self.pin_changed(name)

    async def pin_changed(self, name):
        state = "ON" if self.pins[name].read() else "OFF"
        ok = await self.link.publish(self.topic("state/" + name), state, True, 1)
        if not ok:
            log("state of %s not published: link down" % name)

    async def event(self, kind, text):
        await self.link.publish(self.topic("event"), json.dumps({"v": 1, "kind": kind, "text": text}), False, 0)
