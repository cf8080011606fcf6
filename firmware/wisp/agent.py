# The agent loop: every request (MQTT ask, serial REPL, schedule) enters one bounded inbox
# with its source, and runs one at a time. Simple named-pin requests take the local fast
# path; the rest become an LLM conversation (wisp/answer.py, loaded per request). Every
# accepted request gets exactly one reply. What outlives a request stays here: the inbox, the
# recent turns and the LLM call budget.
import asyncio
import gc
import json
import time

from wisp import limits, unload
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
    # a string, or a whole number (Node-RED's `Date.now()`, a counter): echoed as it came
    if not (isinstance(msg_id, str) and 1 <= len(msg_id) <= limits.MAX_ID or type(msg_id) is int):
        msg_id = None
    v = msg.get("v", 1)
    if v != 1 or v is True:  # JSON true is a bool, and a bool equals 1 in Python
        return None, msg_id, "Error: protocol version %s not supported (this device speaks v1)" % json.dumps(v)
    return msg, msg_id, None


def parse_ask(payload):
    """Return (ask id or None, text, error text or None)."""
    ask, ask_id, err = parse_message(payload, "ask", '{"id": "...", "text": "..."}')
    if err:
        return ask_id, None, err
    if ask_id is None:
        return None, None, "Error: ask 'id' must be a string of 1-%d characters or a whole number" % limits.MAX_ID
    text = ask.get("text")
    if not isinstance(text, str) or not text.strip():
        return ask_id, None, "Error: ask 'text' must be a non-empty string"
    if len(text) > limits.MAX_ASK_TEXT:
        return ask_id, None, "Error: ask text longer than %d characters" % limits.MAX_ASK_TEXT
    return ask_id, text, None


def _positive(value, default):
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


class CallBudget:
    """LLM rounds allowed per hour and per day, counted on the device (a runaway schedule or a
    chatty automation must not run up a bill). Windows are clock buckets: hour and day of UTC."""

    def __init__(self, now=time.time, per_hour=limits.LLM_CALLS_PER_HOUR, per_day=limits.LLM_CALLS_PER_DAY):
        self.now = now
        self.per_hour, self.per_day = per_hour, per_day
        self.hour = self.day = None
        self.in_hour = self.in_day = 0

    def take(self):
        """Count one LLM call; returns an error text when a cap is reached."""
        t = int(self.now())
        hour, day = t // 3600, t // 86400
        if hour != self.hour:
            self.hour, self.in_hour = hour, 0
        if day != self.day:
            self.day, self.in_day = day, 0
        if self.in_hour >= self.per_hour:
            return "Error: this device's LLM budget of %d calls per hour is used up" % self.per_hour
        if self.in_day >= self.per_day:
            return "Error: this device's LLM budget of %d calls per day is used up" % self.per_day
        self.in_hour += 1
        self.in_day += 1
        return None


class Agent:
    def __init__(self, dev):
        self.dev = dev
        cfg = dev.config  # config.json may lower or raise the caps; limits.py has the defaults
        self.budget = CallBudget(per_hour=_positive(cfg.get("llm_per_hour"), limits.LLM_CALLS_PER_HOUR),
                                 per_day=_positive(cfg.get("llm_per_day"), limits.LLM_CALLS_PER_DAY))
        self.conv = None             # the LLM conversation while an ask has one (wisp/answer.py)
        self.inbox = []              # (source, id, text, ticks when received, done callback)
        self.history = []            # recent turns sent as context: JSON [user text, answer, [[tool, args, result]]]
        self._wake = asyncio.Event()
        self._seq = 0
        self.replies = 0

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
        if self.dev.signed:  # the bridge signs what the device acts on; a forged one is reported
            from wisp import sign
            payload = sign.unseal(self.dev, payload, "llm/res")
        if payload is None or self.conv is None:
            return  # refused, or no LLM round waits (a late answer): not parsed
        try:
            msg = json.loads(payload)
        except ValueError:
            log("llm/res ignored: not JSON")
            return
        if isinstance(msg, dict):
            self.conv.on_res(msg, len(payload))

    def submit(self, text, source, ask_id=None, done=None, llm=0):
        """Queue a request. `done(reply)` is called for sources other than mqtt. llm: 2 when the
        LLM wrote the text (a prompt it scheduled): what the request does acts for the LLM.
        Returns the id, or None when the inbox is full (the refusal is still delivered as a reply)."""
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
        self.inbox.append((source, ask_id, text, t0, done, llm))
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
            source, ask_id, text, t0, done, llm = self.inbox.pop(0)
            self.dev.busy = True
            try:
                reply = await self._answer(ask_id, text, t0, source, llm)
            except Exception as e:  # a bug must cost one request, never the loop
                log("error: request %s failed: %r" % (ask_id, e))
                reply = self._reply(ask_id, False, "Error: internal error on the device: %r" % (e,), "error", t0)
            self.dev.busy = False
            self.conv = None
            unload("wisp.answer")  # with the conversation: no heap held between requests
            unload("wisp.conversation")
            self.dev.rest()
            history = self.history
            if history and not isinstance(history[-1], str):
                # The turn just remembered (answer.remember), kept as one JSON string written after
                # a collection, so it goes to the lowest hole that fits: its pieces were made among
                # the request's objects and would stay as islands in the freed heap, where the next
                # request's module loads need runs of blocks (docs/architecture.md "Heap budget").
                gc.collect()
                history[-1] = json.dumps(history[-1])
            try:
                await self._deliver(source, done, reply)
            except Exception as e:  # e.g. no heap to encode it: one reply lost, never the loop
                log("error: reply to %s lost: %r" % (ask_id, e))

    def _answer(self, ask_id, text, t0, source, llm=0):
        """The coroutine that answers one request. A plain method: the module bound here would
        stay alive in run()'s frame, and it is dropped after each request (run)."""
        from wisp import answer
        return answer.answer(self, ask_id, text, t0, source, llm)

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
