# The agent loop: every request (MQTT ask, serial REPL, schedule) enters one bounded inbox
# with its source, and runs one at a time. Simple named-pin requests take the local fast
# path; the rest become an LLM conversation (wisp/conversation.py). Every accepted request gets
# exactly one reply.
import asyncio
import json
import time

from wisp import fastpath, limits, tools
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
        self.history = []            # recent (user text, answer) turns sent as context
        self._wake = asyncio.Event()
        self._seq = 0
        self.replies = 0

    # ---- entry points: quick, never block ------------------------------------------------
    def on_ask(self, payload):
        """An ask from MQTT; the reply goes to wisp/<id>/reply."""
        ask_id, text, err = parse_ask(payload)
        if err:
            log("ask refused: " + err)
            self.replies += 1
            self.dev.outbox.answer("reply", self._reply(ask_id, False, err, "error", time.ticks_ms()))
            return
        self.submit(text, "mqtt", ask_id)

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
            source, ask_id, text, t0, done = self.inbox.pop(0)
            self.dev.busy = True
            try:
                reply = await self._answer(ask_id, text, t0, source)
            except Exception as e:  # a bug must cost one request, never the loop
                log("error: request %s failed: %r" % (ask_id, e))
                reply = self._reply(ask_id, False, "Error: internal error on the device: %r" % (e,), "error", t0)
            self.dev.busy = False
            await self._deliver(source, done, reply)

    async def _answer(self, ask_id, text, t0, source):
        if self.dev.pending is not None and source in ("mqtt", "repl"):
            from wisp import confirm
            held = confirm.take(self.dev, text)  # the user's "yes" to an action the LLM proposed
            if held is not None:
                result = await tools.run(self.dev, held[0], held[1])
                ok = not result.startswith("Error")
                return self._reply(ask_id, ok, "confirmed: " + result if ok else result, "device", t0)
        local = None
        if self.dev.config.get("fast_path", True):
            local = fastpath.parse(text, self.dev.pins)
        if local is not None:
            return await self._fast_path(ask_id, local, t0)
        facts = None
        memory = getattr(self.dev, "memory", None)
        if memory is not None:
            facts = memory.for_prompt(limits.MAX_FACTS_PROMPT_BYTES)
        history = []
        for user, answer in self.history:
            history.append({"r": "user", "t": user})
            history.append({"r": "asst", "t": answer})
        req_class = "scheduled" if source == "sched" else "interactive"
        ok, answer, tier = await self.conv.run(ask_id, text, history, facts, req_class)
        if ok:
            self._remember(text, answer)
        return self._reply(ask_id, ok, answer, "llm", t0, tier)

    async def _fast_path(self, ask_id, intent, t0):
        kind, name, value = intent
        if kind == "get":
            result = await tools.run(self.dev, "gpio_read", {"pin": name})
        else:
            result = await tools.run(self.dev, "gpio_write", {"pin": name, "value": value})
        if result.startswith("Error"):
            return self._reply(ask_id, False, result, "device", t0)
        return self._reply(ask_id, True, fastpath.say(name, self.dev.pins[name].read()), "device", t0)

    def _remember(self, text, answer):
        self.history.append((text[:limits.HISTORY_TEXT], answer[:limits.HISTORY_TEXT]))
        if len(self.history) > limits.HISTORY_TURNS:
            self.history.pop(0)

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
