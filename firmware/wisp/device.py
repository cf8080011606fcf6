# The device's shared context: config, board, named pins and the MQTT link, plus the
# announcements every connect owes the broker (status, manifest, pin states).
import json

import hashlib
import binascii

from wisp import VERSION, limits, tools
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
        self.outbox = []  # (suffix, payload) owed while the link was down
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
            body = {"tools": tools.schemas(self),
                    "pins": {n: {"mode": p.mode} for n, p in self.pins.items()}}
            digest = hashlib.sha256(json.dumps(body)).digest()
            self.manifest_hash = binascii.hexlify(digest[:4]).decode()
            body.update({"v": 1, "id": self.id, "fw": VERSION, "hash": self.manifest_hash,
                         "limits": {"rounds": limits.MAX_ROUNDS, "calls": limits.MAX_CALLS_PER_ROUND}})
            self._manifest = json.dumps(body)
        return self._manifest

    async def publish_json(self, suffix, obj, retain=False, qos=1, wait_ms=limits.LINK_WAIT_MS, owed=False):
        """Publish under wisp/<id>/. With owed=True a message that cannot go out now (link down)
        is kept, up to OUTBOX_MAX, and sent after the next connect."""
        payload = json.dumps(obj)
        if await self.link.publish(self.topic(suffix), payload, retain, qos, wait_ms):
            return True
        if owed:
            if len(self.outbox) >= limits.OUTBOX_MAX:
                self.outbox.pop(0)
                log("error: outbox full; oldest owed message dropped")
            self.outbox.append((suffix, payload))
        return False

    async def announce(self):
        """Everything retained the broker should hold after each (re)connect."""
        await self.link.publish(self.topic("status"), self.status_payload("online"), True, 1)
        await self.link.publish(self.topic("manifest"), self.manifest(), True, 1)
        for name in self.pins:
            await self.pin_changed(name)
        try:
            from wisp import ha
            await ha.announce(self)
        except Exception as e:  # discovery is a courtesy: never let it block what we owe below
            log("error: Home Assistant discovery failed: %r" % (e,))
        while self.outbox:  # what we owe from while the link was down, oldest first
            suffix, payload = self.outbox[0]
            if not await self.link.publish(self.topic(suffix), payload, False, 1):
                return
            self.outbox.pop(0)

    async def pin_changed(self, name):
        # retained, and republished on every connect: a missed update heals itself
        state = self.pins[name].state()
        await self.link.publish(self.topic("state/" + name), state, True, 1, 0)

    async def event(self, kind, text):
        """Best effort: events are not worth blocking the agent for while the link is down."""
        await self.link.publish(self.topic("event"), json.dumps({"v": 1, "kind": kind, "text": text}), False, 0, 0)
