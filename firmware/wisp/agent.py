# The agent loop: asks wait in a bounded inbox and run one at a time. Each ask runs LLM
# rounds (llm/req -> streamed llm/res tool calls, executed the moment they arrive) until the
# LLM answers in words, fails, or the round cap is hit. Every accepted ask gets exactly one reply.
import asyncio
import json
import time

from micropython import const

from wisp import limits, tools
from wisp.log import log

_MAX_HELD = const(16)  # llm/res messages buffered per round (out of order or not yet processed)


def parse_ask(payload):
    """Return (ask id or None, text, error text or None)."""
    if payload is None:
        return None, None, "Error: ask larger than %d bytes refused" % limits.MAX_PAYLOAD
    try:
        ask = json.loads(payload)
    except ValueError:
        return None, None, "Error: ask is not valid JSON; send {\"id\": \"...\", \"text\": \"...\"}"
    if not isinstance(ask, dict):
        return None, None, "Error: ask must be a JSON object {\"id\": \"...\", \"text\": \"...\"}"
    ask_id = ask.get("id")
    if not isinstance(ask_id, str) or not 1 <= len(ask_id) <= limits.MAX_ID:
        return None, None, "Error: ask 'id' must be a string of 1-%d characters" % limits.MAX_ID
    if ask.get("v", 1) != 1:
        return ask_id, None, "Error: protocol version %r not supported (this device speaks v1)" % (ask.get("v"),)
    text = ask.get("text")
    if not isinstance(text, str) or not text.strip():
        return ask_id, None, "Error: ask 'text' must be a non-empty string"
    if len(text) > limits.MAX_ASK_TEXT:
        return ask_id, None, "Error: ask text longer than %d characters" % limits.MAX_ASK_TEXT
    return ask_id, text, None


def _describe(call, result):
    args = call.get("args")
    shown = ",".join("%s=%s" % (k, args[k]) for k in args) if isinstance(args, dict) else ""
    return "%s(%s) -> %s" % (call.get("tool"), shown, result)


class Agent:
    def __init__(self, dev):
        self.dev = dev
        self.inbox = []              # (ask id, text, ticks when received)
        self._wake = asyncio.Event()
        self._want = None            # (ask id, round) whose llm/res we are waiting for
        self._res = []               # llm/res messages for _want, in arrival order
        self._res_ev = asyncio.Event()
        self.replies = 0

    # ---- called by the MQTT reader: quick, never blocks ----------------------------------
    def on_ask(self, payload):
        t0 = time.ticks_ms()
        ask_id, text, err = parse_ask(payload)
        if err is None and len(self.inbox) >= limits.INBOX_MAX:
            err = "Error: device busy (%d asks waiting); try again shortly" % len(self.inbox)
        if err:
            log("ask refused: " + err)
            asyncio.create_task(self._reply(ask_id, False, err, "error", t0))
            return
        self.inbox.append((ask_id, text, t0))
        self._wake.set()

    def on_llm_res(self, payload):
        if payload is None or self._want is None:
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            log("llm/res ignored: not JSON")
            return
        if not isinstance(msg, dict) or msg.get("id") != self._want[0] or msg.get("round") != self._want[1]:
            return  # stale, duplicate or foreign answer
        if len(self._res) >= _MAX_HELD:
            log("llm/res dropped: too many unprocessed messages")
            return
        self._res.append(msg)
        self._res_ev.set()

    # ---- the agent task ------------------------------------------------------------------
    async def run(self):
        while True:
            if not self.inbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            ask_id, text, t0 = self.inbox.pop(0)
            try:
                ok, answer, tier = await self._handle(text, ask_id)
            except Exception as e:  # a bug must cost one ask, never the loop
                log("error: ask %s failed: %r" % (ask_id, e))
                ok, answer, tier = False, "Error: internal error on the device: %r" % (e,), None
            self._want = None
            await self._reply(ask_id, ok, answer, "llm", t0, tier)

    async def _handle(self, text, ask_id):
        msgs = [{"r": "user", "t": text}]
        actions = []
        tier = None
        for rnd in range(limits.MAX_ROUNDS):
            kind, answer, tier = await self._round(ask_id, rnd, msgs, actions)
            if kind == "text":
                return True, answer, tier
            if kind == "err":
                if actions:
                    answer += " (done before the failure: %s)" % "; ".join(actions)
                return False, answer, tier
        return False, "Error: stopped after %d rounds without a final answer; done: %s" % (
            limits.MAX_ROUNDS, "; ".join(actions)), tier

    async def _round(self, ask_id, rnd, msgs, actions):
        """One LLM round. Returns (kind, text, tier); kind is 'calls', 'text' or 'err'."""
        self._want = (ask_id, rnd)
        self._res = []
        self._res_ev.clear()
        req = {"v": 1, "id": ask_id, "round": rnd, "msgs": msgs, "class": "interactive",
               "budget_ms": limits.ROUND_TIMEOUT_MS, "hash": self.dev.manifest_hash}
        if not await self.dev.publish_json("llm/req", req):
            return "err", "Error: the cloud is unreachable (no broker connection)", None
        deadline = time.ticks_add(time.ticks_ms(), limits.ROUND_TIMEOUT_MS)
        next_seq, held, done_calls = 0, {}, []
        while True:
            while self._res:
                m = self._res.pop(0)
                seq = m.get("seq", 0)
                if isinstance(seq, int) and next_seq <= seq < next_seq + _MAX_HELD:
                    held[seq] = m
            while next_seq in held:
                m = held.pop(next_seq)
                next_seq += 1
                calls = m.get("calls")
                for call in calls if isinstance(calls, list) else ():
                    done_calls.append(await self._call(call, len(done_calls)))
                if m.get("done"):
                    self._want = None
                    return self._finish(m, done_calls, msgs, actions)
            remaining = time.ticks_diff(deadline, time.ticks_ms())
            if remaining <= 0:
                self._want = None
                return "err", "Error: no answer from the bridge within %d s (is a bridge running?)" % (
                    limits.ROUND_TIMEOUT_MS // 1000), None
            if not self._res:
                self._res_ev.clear()
                try:
                    await asyncio.wait_for_ms(self._res_ev.wait(), remaining)
                except asyncio.TimeoutError:
                    pass

    async def _call(self, call, index):
        if not isinstance(call, dict):
            call = {"cid": "c%d" % index, "tool": None, "args": None}
        cid = call.get("cid")
        if not isinstance(cid, str):
            cid = "c%d" % index
        if index >= limits.MAX_CALLS_PER_ROUND:
            result = "Error: more than %d tool calls in one round; this one was not run" % limits.MAX_CALLS_PER_ROUND
        else:
            result = await tools.run(self.dev, call.get("tool"), call.get("args"))
        log("tool " + _describe(call, result))
        return {"cid": cid, "tool": call.get("tool"), "args": call.get("args"), "result": result}

    def _finish(self, done, done_calls, msgs, actions):
        tier = done.get("tier") if isinstance(done.get("tier"), str) else None
        err = done.get("err")
        text = done.get("text")
        text = text if isinstance(text, str) else ""
        for c in done_calls:
            actions.append(_describe(c, c["result"]))
        if err:
            return "err", "Error: " + str(err)[:limits.MAX_ASK_TEXT], tier
        if not done_calls:
            return "text", text, tier
        msgs.append({"r": "asst", "t": text,
                     "calls": [{"cid": c["cid"], "tool": c["tool"], "args": c["args"]} for c in done_calls]})
        for c in done_calls:
            msgs.append({"r": "tool", "cid": c["cid"], "t": c["result"]})
        return "calls", None, tier

    async def _reply(self, ask_id, ok, text, path, t0, tier=None):
        reply = {"v": 1, "id": ask_id, "ok": ok, "text": text, "path": path,
                 "ms": time.ticks_diff(time.ticks_ms(), t0)}
        if tier:
            reply["tier"] = tier
        if await self.dev.publish_json("reply", reply):
            self.replies += 1
        else:
            log("error: reply to %s lost: link down" % ask_id)
