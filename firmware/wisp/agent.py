# The agent loop: every request (MQTT ask, serial REPL, schedule) enters one bounded inbox
# with its source, and runs one at a time. Simple named-pin requests take the local fast
# path; the rest become an LLM conversation (wisp/conversation.py). Every accepted request gets
# exactly one reply.
import asyncio
import json
import time

from wisp import limits, tools, unload
from wisp.conversation import Conversation
from wisp.log import log


def parse_message(payload, what, shape):
    """The checks every incoming v1 JSON message (ask, cmd) gets. Returns (message dict or None,
    its id or None when missing or malformed, error text or None); `what` and `shape` word the errors."""
    if payload is None:
        return None, None, "Error: %s larger than %d bytes refused" % (what, limits.MAX_PAYLOAD)
    try:
        msg = json.loads(payload)
    except ValueError:
        return None, None, "Error: %s is not valid JSON; send %s" % (what, shape)
    if not isinstance(msg, dict):
        return None, None, "Error: %s must be an object: send the JSON object %s" % (what, shape)
    msg_id = msg.get("id")
    if not isinstance(msg_id, str) or not 1 <= len(msg_id) <= limits.MAX_ID:
        msg_id = None
    if msg.get("v", 1) != 1:
        return None, msg_id, "Error: protocol version %r not supported (this device speaks v1)" % (msg.get("v"),)
    return msg, msg_id, None


def parse_ask(payload):
    """Return (ask id or None, text, error text or None)."""
    ask, ask_id, err = parse_message(payload, "ask", '{"id": "...", "text": "..."}')
    if err:
        return ask_id, None, err
    if ask_id is None:
        return None, None, "Error: ask 'id' must be a string of 1-%d characters" % limits.MAX_ID
    text = ask.get("text")
    if not isinstance(text, str) or not text.strip():
        return ask_id, None, "Error: ask 'text' must be a non-empty string"
    if len(text) > limits.MAX_ASK_TEXT:
        return ask_id, None, "Error: ask text longer than %d characters" % limits.MAX_ASK_TEXT
    return ask_id, text, None


class Agent:
    def __init__(self, dev):
        self.dev = dev
        self.conv = Conversation(dev)
        self.inbox = []              # (source, id, text, ticks when received, done callback)
        self.history = []            # recent (user text, answer, [(tool, args, result)]) turns sent as context
        self._wake = asyncio.Event()
        self._seq = 0
        self.replies = 0
        self.pin_names = None        # the fast path's table of pin names and aliases, built on first use

    # ---- entry points: quick, never block ------------------------------------------------
    def on_ask(self, payload):
        """An ask from MQTT; the reply goes to wisp/<id>/reply. A signed-only device takes only asks
        signed with its key, fresh ones (their "ts" and id pass the commands' replay check)."""
        if self.dev.signed == "only" and payload is not None:
            payload, err = self._signed_ask(payload)
            if err:
                self.replies += 1
                self.dev.outbox.answer("reply", self._reply(parse_message(payload, "", "")[1], False, err, "error",
                                                            time.ticks_ms()))
                return
        ask_id, text, err = parse_ask(payload)
        if err:
            log("ask refused: " + err)
            self.replies += 1
            self.dev.outbox.answer("reply", self._reply(ask_id, False, err, "error", time.ticks_ms()))
            return
        self.submit(text, "mqtt", ask_id)

    def _signed_ask(self, payload):
        """(the signed ask text, or the payload when refused; error text or None)."""
        from wisp import sign
        body = sign.unseal(self.dev, payload, "ask")
        if body is None:
            return payload, "Error: ask refused: it must be signed with this device's key"
        msg, msg_id, err = parse_message(body, "ask", "")
        return body, err or self.fresh(msg_id, msg.get("ts"))

    def on_llm_res(self, payload):
        if self.dev.signed:  # the bridge signs what the device acts on
            from wisp import sign
            payload = sign.unseal(self.dev, payload, "llm/res")
        if payload is None:
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            log("llm/res ignored: not JSON")
            return
        if isinstance(msg, dict):
            self.conv.on_res(msg, len(payload))

    def submit(self, text, source, ask_id=None, done=None):
        """Queue a request. `done(reply)` is called for sources other than mqtt. Returns the id,
        or None when the inbox is full (the refusal is still delivered as a reply)."""
        t0 = time.ticks_ms()
        if ask_id is None:
            self._seq += 1
            ask_id = "%s-%d-%d" % (source[:5], self._seq, t0 & 0xFFFF)
        if len(self.inbox) >= limits.INBOX_MAX:
            err = "Error: device busy (%d requests waiting); try again shortly" % len(self.inbox)
            log("%s refused: busy" % source)
            refusal = self._reply(ask_id, False, err, "error", t0)
            if source == "mqtt":
                self.replies += 1
                self.dev.outbox.answer("reply", refusal)
            else:
                self.dev.spawn(self._deliver(source, done, refusal), source)
            return None
        self.inbox.append((source, ask_id, text, t0, done))
        self._wake.set()
        return ask_id

    # ---- the agent task ------------------------------------------------------------------
    async def run(self):
        while True:
            if not self.inbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            while self.dev.announcing:  # a (re)connect's announce first: the two need the heap at once
                await asyncio.sleep_ms(50)
            source, ask_id, text, t0, done = self.inbox.pop(0)
            self.dev.busy = True
            try:
                reply = await self._answer(ask_id, text, t0, source)
            except Exception as e:  # a bug must cost one request, never the loop
                log("error: request %s failed: %r" % (ask_id, e))
                reply = self._reply(ask_id, False, "Error: internal error on the device: %r" % (e,), "error", t0)
            self.dev.busy = False
            self.dev.rest()
            await self._deliver(source, done, reply)

    async def _answer(self, ask_id, text, t0, source):
        if self.dev.pending is not None and source in ("mqtt", "repl"):
            from wisp import confirm
            held = confirm.take(self.dev, text)  # the user's "yes" to an action the LLM proposed
            if held is not None:
                result = await tools.run(self.dev, held[0], held[1])
                ok = not result.startswith("Error")
                if ok:  # the held call is done now: the next asks' context says so
                    self._remember(text, result, [{"tool": held[0], "args": held[1], "result": result}])
                return self._reply(ask_id, ok, "confirmed: " + result if ok else result, "device", t0)
        local = self._local(text) if self.dev.config.get("fast_path", True) else None
        if local is not None:
            return await self._fast_path(ask_id, text, local, t0)
        facts = None
        memory = self.dev.facts_memory()
        if memory is not None:
            facts = memory.for_prompt(limits.MAX_FACTS_PROMPT_BYTES)
        req_class = "scheduled" if source == "sched" else "interactive"
        self.conv.llm = 2 if source == "sched" else 1  # no user to say "yes" to a scheduled prompt
        ok, answer, tier = await self.conv.run(ask_id, text, self._context(), facts, req_class)
        ran, self.conv.ran = self.conv.ran, []  # its results may be long: keep only the bounded record
        if ok:
            self._remember(text, answer, ran)
        return self._reply(ask_id, ok, answer, "llm", t0, tier)

    def _local(self, text):
        """The fast path's reading of text: (actions, its say function), or None. Not a coroutine:
        a name bound in _answer's frame would keep the module alive through the LLM rounds."""
        from wisp import fastpath
        if self.pin_names is None:
            self.pin_names = fastpath.names(self.dev.pins)
        local = fastpath.parse(text, self.dev.pins, self.pin_names)
        if local is not None:
            local = (local, fastpath.say)
        unload("wisp.fastpath")  # ~8 KB from .mpy on a 32-bit port: free for LLM rounds, TLS, tools
        return local

    async def _fast_path(self, ask_id, text, local, t0):
        actions, say = local  # say keeps the module's code alive until the reply is written
        pins = self.dev.pins
        ran = []
        for kind, name, value, _said in actions:  # all or nothing: a refused switch stops them all
            if kind == "set":
                pin = pins[name]
                err = pin.refusal((0 if pin.read() else 1) if value == 2 else value)
                if err:
                    return self._reply(ask_id, False, err, "device", t0)
        for kind, name, value, _said in actions:
            if kind == "set":
                call = {"tool": "gpio_toggle", "args": {"pin": name}} if value == 2 else \
                    {"tool": "gpio_write", "args": {"pin": name, "value": value}}
                call["result"] = result = await tools.run(self.dev, call["tool"], call["args"])
                if result.startswith("Error"):
                    return self._reply(ask_id, False, result, "device", t0)
                ran.append(call)
        answer = say(actions, pins)
        self._remember(text, answer, ran)  # "and turn it off again" may go to the LLM next
        return self._reply(ask_id, True, answer, "device", t0)

    def _remember(self, text, answer, ran):
        """Keep the turn for the next asks' context: what was asked, answered, and done. The calls
        that ran and their results, in at most HISTORY_DID characters (later ones, and the end of
        a long result, left out): "Done." alone would not tell the LLM what "it" was."""
        did, room = [], limits.HISTORY_DID
        for c in ran:
            result, args = c["result"], c["args"] or {}
            if result.startswith("Error"):
                continue  # nothing was done (the answer says why)
            room -= len(c["tool"]) + len(json.dumps(args))
            if room <= 0:
                break
            did.append((c["tool"], args, result[:room]))
            room -= len(result)
        self.history.append((text[:limits.HISTORY_TEXT], answer[:limits.HISTORY_TEXT], did))
        if len(self.history) > limits.HISTORY_TURNS:
            self.history.pop(0)

    def _context(self):
        """The remembered turns as conversation messages; what was done as the calls and results
        it was (cids "h1", "h2", ...: unique in the request, whatever ids the tiers gave)."""
        msgs, n = [], 0
        for user, answer, did in self.history:
            msgs.append({"r": "user", "t": user})
            if did:
                calls = []
                msgs.append({"r": "asst", "t": "", "calls": calls})
                for tool, args, result in did:
                    n += 1
                    cid = "h%d" % n
                    calls.append({"cid": cid, "tool": tool, "args": args})
                    msgs.append({"r": "tool", "cid": cid, "t": result})
            msgs.append({"r": "asst", "t": answer})
        return msgs

    def _reply(self, ask_id, ok, text, path, t0, tier=None):
        reply = {"v": 1, "id": ask_id, "ok": ok, "text": text, "path": path,
                 "ms": time.ticks_diff(time.ticks_ms(), t0)}
        if tier:
            reply["tier"] = tier
        return reply

    async def _deliver(self, source, done, reply):
        if source == "mqtt":
            await self._publish_reply(reply)
            return
        if done is not None:
            try:
                done(reply)
            except Exception as e:
                log("error: reply handler failed: %r" % (e,))
        if source == "sched":
            await self.dev.event("ask", "%s: %s" % ("ok" if reply["ok"] else "failed", reply["text"][:120]))

    async def _publish_reply(self, reply):
        self.replies += 1
        await self.dev.publish_json("reply", reply, owed=True)
