# The device's shared context: config, board, named pins and the MQTT link, plus the
# announcements every connect owes the broker (status, manifest, pin states, owed messages).
import asyncio
import json
import os
import time

from wisp import VERSION, limits, unload
from wisp.log import log, rarely
from wisp.outbox import Outbox

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


def _signing(config):
    """(key bytes or None, the mode): False (unsigned), True (llm/res and cmd must be signed) or
    "only" (asks must be signed too and set/ is refused: nothing unsigned acts; docs/security.md).
    A provisioned key turns signing on unless config says "signed": false; signing with a malformed
    or missing key refuses everything rather than silently accepting unsigned instructions."""
    text = config.get("key")
    mode = config.get("signed", text is not None)
    if mode is False:
        return None, False
    from wisp import sign
    key = sign.key_from_hex(text)  # None when missing: signing asked for, so refuse rather than accept all
    if key is None:
        log("config error: signing needs key, 64 hex characters from `wisp provision`; signed instructions "
            "cannot be checked, so every llm/res and cmd will be refused")
    return key, "only" if mode == "only" else True


class Device:
    def __init__(self, config, board, pins):
        self.config = config
        self.board = board
        self.pins = pins
        self.id = config["id"]
        self.prefix = "wisp/%s/" % self.id
        self.link = None  # set by wisp.app once the MQTT client exists
        self.boots = _count_boot()
        self.outbox = Outbox(self)  # replies queued for sending, and those owed while the link is down
        self.key, self.signed = _signing(config)
        self.refused = 0  # unsigned, forged or stale instructions refused (wisp/sign.py unseal)
        self.spawned = 0  # tasks started for network messages and still running
        self.pending = None  # an LLM action on a confirm pin held for the user's "yes" (wisp/confirm.py)
        self.busy = False  # an ask is being answered: system_reboot waits for its reply to go out
        self.announcing = False  # a connect's announce is running: requests wait for it
        self.dropped = 0  # network messages dropped because too many were in progress
        self.connected_n, self.connected_ms = 0, 0  # which connect announced last, and when (wisp/ha.py)

    def __getattr__(self, name):
        # Memory and routines load on first use (a tool call, an LLM ask, a routine trigger):
        # until then their code and stores hold no heap. Tests may also assign their own.
        if name == "manifest_hash":  # every llm/req carries it; computed once the tools are loaded
            # (at boot, after the first connect: wisp/app.py), not while the link still connects
            from wisp.tools import manifest
            self.manifest_hash = manifest.digest(self)
            del manifest
            unload("wisp.tools.manifest")  # one-shot: its code and tables go back to the heap
            return self.manifest_hash
        if name == "memory":
            from wisp.memory import Memory
            self.memory = Memory(log)
            return self.memory
        if name == "routines":
            from wisp.routines import Routines
            self.routines = Routines(self, log)
            return self.routines
        raise AttributeError(name)

    def rest(self):
        """After each request (ask, command, job, input edge): drop the memory and the routines,
        which flash holds whole and the next use loads again in a few ms. Until then their code
        and data hold no heap (~4 and ~5 KB on a 32-bit port), and what loads next finds room.
        Each says when it must stay (`keep`): a routine runs, a read reordered the facts."""
        for name in ("routines", "memory"):
            held = self.__dict__.get(name)
            if held is not None and not getattr(held, "keep", 1):
                # None first: delattr leaves the old value in the freed slot of the instance's
                # dict, where the collector still finds it (the module stayed whole in the heap)
                setattr(self, name, None)
                delattr(self, name)
                held = None
                unload("wisp." + name)
                if name == "routines":
                    unload("wisp.routine_run")  # its runner: loaded by a run, none runs now
        unload("wisp.tools.gpio")  # resident for the request's steps only: loaded among its objects,
        # it would stay an island in the freed heap where the next module load needs runs of blocks

    def facts_memory(self):
        """The memory when it is loaded or flash holds some (memory.json, or the .tmp a cut save
        left), else None: an LLM ask on a device that never remembered anything loads no code."""
        if "memory" not in self.__dict__:
            for path in ("memory.json", "memory.tmp"):  # wisp/memory.py STORE_NAME, as wisp/store.py names it
                try:
                    os.stat(path)
                    break
                except OSError:
                    pass
            else:
                return None
        return self.memory

    def topic(self, suffix):
        return self.prefix + suffix

    def status_payload(self, state):
        if state == "offline":
            return json.dumps({"v": 1, "state": "offline"})
        return json.dumps({"v": 1, "state": state, "fw": VERSION, "boots": self.boots, "board": self.board.name})

    def manifest(self):
        """The manifest as JSON text: tools (from the registry), named pins, limits and a hash."""
        from wisp.tools import manifest
        text = "".join(manifest.pieces(self, self.manifest_hash))
        del manifest
        unload("wisp.tools.manifest")
        return text

    async def _publish_manifest(self):
        # Streamed: the MQTT client walks the pieces once for the length and once to send, so
        # the ~7 KB text is never held whole (it was the biggest peak of a reconnect).
        from wisp.tools import manifest
        ok = await self.link.publish(self.topic("manifest"), lambda m=manifest: m.pieces(self, self.manifest_hash),
                                     True, 1)
        del manifest
        unload("wisp.tools.manifest")
        return ok

    def spawn(self, coro, what):
        """Run work a network message asked for, unless SPAWN_MAX such tasks are already
        running: a flood of messages must not turn into a flood of tasks that eats the heap."""
        if self.spawned >= limits.SPAWN_MAX:
            coro.close()
            self.count_drop(what)
            return False
        self.spawned += 1
        asyncio.create_task(self._spawned(coro))
        return True

    def count_drop(self, what):
        self.dropped += 1
        if rarely(self.dropped):
            log("error: busy, %d message(s) dropped so far (last: %s)" % (self.dropped, what))

    async def _spawned(self, coro):
        try:
            await coro
        except Exception as e:
            log("error: task failed: %r" % (e,))
        finally:
            self.spawned -= 1

    async def publish_json(self, suffix, obj, retain=False, qos=1, wait_ms=limits.LINK_WAIT_MS, owed=False):
        """Publish under wisp/<id>/. With owed=True a message that cannot go out now (link down)
        is kept in the outbox, up to OUTBOX_MAX, and sent after the next connect."""
        payload = json.dumps(obj)
        if await self.link.publish(self.topic(suffix), payload, retain, qos, wait_ms):
            return True
        if owed:
            self.outbox.owe(suffix, payload)
        return False

    async def announce(self):
        """Everything retained the broker should hold after each (re)connect. Requests wait until
        it is done (Agent.run): its manifest and discovery texts and an ask's do not share the heap."""
        self.connected_n, self.connected_ms = getattr(self.link, "connects", 0), time.ticks_ms()
        self.announcing = True
        try:
            await self.link.publish(self.topic("status"), self.status_payload("online"), True, 1)
            await self._publish_manifest()
            for name in self.pins:
                await self.pin_changed(name)
            if not await self._discovery():  # a courtesy: it never blocks what we owe below
                # short of heap for a moment: once more a little later
                self.spawn(self._discovery(limits.HA_RETRY_MS), "discovery")
        finally:
            self.announcing = False
        await self.outbox.flush()  # what we owe from while the link was down

    async def _discovery(self, wait_ms=0):
        """Home Assistant discovery (wisp/ha.py); False when it failed."""
        await asyncio.sleep_ms(wait_ms)
        try:
            from wisp import ha
            await ha.announce(self)
            return True
        except Exception as e:
            log("error: Home Assistant discovery failed%s: %r" % (" again" if wait_ms else "", e))
            return False
        finally:
            ha = None  # drop our reference too, so unload below frees the module
            unload("wisp.ha")  # needed again only at the next connect or set/ command

    async def pin_changed(self, name):
        # retained, and republished on every connect: a missed update heals itself
        state = self.pins[name].state()
        await self.link.publish(self.topic("state/" + name), state, True, 1, 0)

    async def event(self, kind, text):
        """Best effort: events are not worth blocking the agent for while the link is down."""
        await self.link.publish(self.topic("event"), json.dumps({"v": 1, "kind": kind, "text": text}), False, 0, 0)
