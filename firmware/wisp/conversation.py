# The LLM conversation of one ask, seen from the device: rounds of llm/req -> streamed llm/res.
# Tool calls run the moment their message arrives, strictly in seq order; stale, duplicate and
# foreign messages are ignored. Each round takes one call from the agent's budget (the device's
# own caps per hour and day, wisp/agent.py). Loaded for an LLM ask only, by wisp/answer.py.
import asyncio
import binascii
import json
import os
import time

from micropython import const

from wisp import limits, tools
from wisp.log import log

_MAX_HELD = const(16)  # llm/res messages buffered per round (out of order or not yet processed)
_PIECE = const(128)    # characters per piece of a request's JSON text (see _pieces)


def _pieces(req):
    """The JSON text of a flat dict, in pieces of about _PIECE characters (a list item is never
    split). After hours of running the heap is free in many small holes: a request sent whole
    needs one block as large as itself (2 KB and more with history and facts), which can fail
    with 20 KB free. The MQTT client, the signature and the bind hash all take pieces."""
    out, cur = [], "{"

    def add(text):
        nonlocal cur
        if len(cur) + len(text) > _PIECE:
            out.append(cur)
            cur = text
        else:
            cur += text
    first = True
    for k in req:
        v = req[k]
        add(("" if first else ",") + json.dumps(k) + ":")
        first = False
        if isinstance(v, list):
            add("[")
            for i, item in enumerate(v):
                add(("," if i else "") + json.dumps(item))
            add("]")
        else:
            add(json.dumps(v))
    out.append(cur + "}")
    return out


def describe(call, result):
    args = call.get("args")
    shown = ",".join("%s=%s" % (k, args[k]) for k in args) if isinstance(args, dict) else ""
    return "%s(%s) -> %s" % (call.get("tool"), shown, result)


def _said(calls):
    return "; ".join(describe(c, c["result"]) for c in calls)


class Conversation:
    def __init__(self, dev, budget):
        self.dev = dev
        self.budget = budget         # the agent's CallBudget: it outlives each ask's conversation
        self._want = None            # (ask id, round) whose llm/res we are waiting for
        self._bind = None            # signed devices: the hash of that request every answer must carry
        self._res = []               # llm/res messages for _want, in arrival order
        self._held_bytes = 0         # payload bytes of _res and the round's held messages
        self._res_ev = asyncio.Event()
        self.llm = 1  # the origin of this ask's tool calls (tools.run): 2 when no user waits on it
        self.ran = []  # the calls of the last ask that ran, {"tool", "args", "result"}: the agent remembers them

    def on_res(self, msg, size=0):
        """Called by the MQTT reader with a decoded llm/res of `size` bytes; never blocks."""
        if self._want is None or msg.get("id") != self._want[0] or msg.get("round") != self._want[1]:
            return  # stale, duplicate or foreign answer
        if self._bind is not None and msg.get("req") != self._bind:
            return  # signed, but for another request text under this id: not our answer
        if len(self._res) >= _MAX_HELD or self._held_bytes + size > limits.HELD_RES_BYTES:
            log("llm/res dropped: too many unprocessed messages")
            return
        self._held_bytes += size
        msg["_n"] = size  # given back when the round has used it
        self._res.append(msg)
        self._res_ev.set()

    async def run(self, ask_id, text, history=(), facts=None, req_class="interactive"):
        """Returns (ok, answer text, tier)."""
        # The request id gets a random suffix: a recorded answer to an earlier request can never
        # match the one the device waits for now (replay protection for signed answers). Surrogates
        # are left out (json reads an escaped emoji as two lone ones): the bridge reads them back
        # as other characters, and its answers would name an id never sent.
        ask_id = "%s.%s" % ("".join(c for c in str(ask_id)[:limits.MAX_ID - 7] if not 0xD7FF < ord(c) < 0xE000),
                            binascii.hexlify(os.urandom(3)).decode())
        msgs = list(history)
        msgs.append({"r": "user", "t": text})
        actions = self.ran = []
        tier = None
        try:
            for rnd in range(limits.MAX_ROUNDS):
                kind, answer, tier = await self._round(ask_id, rnd, msgs, actions, facts, req_class)
                if kind == "text":
                    return True, answer, tier
                if kind == "err":
                    if actions:
                        answer += " (done before the failure: %s)" % _said(actions)
                    return False, answer, tier
        finally:
            self._want = None
        return False, "Error: stopped after %d rounds without a final answer; done: %s" % (
            limits.MAX_ROUNDS, _said(actions)), tier

    async def _round(self, ask_id, rnd, msgs, actions, facts, req_class):
        """One LLM round. Returns (kind, text, tier); kind is 'calls', 'text' or 'err'. In four
        methods, not one: from .mpy files each function's bytecode is one heap block, and a
        600-byte one found no room in a fragmented heap where smaller ones do."""
        refused = self.budget.take()
        if refused:
            return "err", refused, None
        req = self._request(ask_id, rnd, msgs, facts, req_class)
        if not await self.dev.link.publish(self.dev.topic("llm/req"), req, False, 1, limits.OFFLINE_WAIT_MS):
            return "err", "Error: the cloud is unreachable (no broker connection); try again later", None
        return await self._collect(ask_id, rnd, req, msgs, actions)

    async def _collect(self, ask_id, rnd, req, msgs, actions):
        """The round's answers until the final one, the deadline, or a resend of an unanswered
        request; returns as _round does."""
        start = time.ticks_ms()
        deadline = time.ticks_add(start, limits.ROUND_TIMEOUT_MS)
        resent = False
        got = [0, {}, []]  # the next seq to run, held out-of-order messages, the calls done
        while True:
            done = await self._take(got)
            if done is not None:
                self._want = None
                return self._finish(done, got[2], msgs, actions)
            now = time.ticks_ms()
            if got[0] == 0 and not resent and time.ticks_diff(now, start) >= limits.RESEND_MS:
                # Nothing at all yet: the bridge that took the request may have died, or none was
                # subscribed. Send it again with the same id; a live bridge ignores the duplicate.
                resent = True
                log("llm/req %s round %d unanswered; sending again" % (ask_id, rnd))
                await self.dev.link.publish(self.dev.topic("llm/req"), req, False, 1, 0)
            remaining = time.ticks_diff(deadline, now)
            if remaining <= 0:
                self._want = None
                actions += got[2]  # the reply must say what already ran (the bridge died mid-round)
                return "err", "Error: no answer from the bridge within %d s (is a bridge running?)" % (
                    limits.ROUND_TIMEOUT_MS // 1000), None
            if not self._res:
                self._res_ev.clear()
                wait = remaining if resent or got[0] else min(remaining, limits.RESEND_MS)
                try:
                    await asyncio.wait_for_ms(self._res_ev.wait(), wait)
                except asyncio.TimeoutError:
                    pass

    def _request(self, ask_id, rnd, msgs, facts, req_class):
        """The round's llm/req text (in pieces; signed on a device with a key), and what its
        answers must match."""
        self._want = (ask_id, rnd)
        self._res = []
        self._held_bytes = 0
        self._res_ev.clear()
        req = {"v": 1, "id": ask_id, "round": rnd, "msgs": msgs, "class": req_class,
               "budget_ms": limits.ROUND_TIMEOUT_MS, "hash": self.dev.manifest_hash}
        if facts:
            req["facts"] = facts
        req = _pieces(req)
        if self.dev.signed and self.dev.key is not None:
            # the bridge answers only requests signed with this device's key, and binds its
            # signed answers to this exact text, so no one else can obtain answers for us
            from wisp import sign
            self._bind = sign.bind(req)
            req = sign.sign(self.dev.key, req)
        return req

    async def _take(self, got):
        """Run the calls of the llm/res messages received so far, strictly in seq order; the
        final message once it has come, else None. got: [next seq, held messages, calls done]."""
        held = got[1]
        while self._res:
            m = self._res.pop(0)
            seq = m.get("seq", 0)
            if isinstance(seq, int) and got[0] <= seq < got[0] + _MAX_HELD and seq not in held:
                held[seq] = m
            else:
                self._held_bytes -= m.get("_n", 0)
        while got[0] in held:
            m = held.pop(got[0])
            self._held_bytes -= m.get("_n", 0)
            got[0] += 1
            calls = m.get("calls")
            for call in calls if isinstance(calls, list) else ():
                if len(got[2]) > limits.MAX_CALLS_PER_ROUND:
                    break  # one "not run" result tells the LLM; a thousand would fill the heap
                got[2].append(await self._call(call, len(got[2])))
            if m.get("done"):
                return m
        return None

    async def _call(self, call, index):
        if not isinstance(call, dict):
            call = {"cid": "c%d" % index, "tool": None, "args": None}
        cid = call.get("cid")
        if not isinstance(cid, str):
            cid = "c%d" % index
        if index >= limits.MAX_CALLS_PER_ROUND:
            result = "Error: more than %d tool calls in one round; this one was not run" % limits.MAX_CALLS_PER_ROUND
        else:
            # the LLM made this call: confirm pins wait for the user's "yes" (wisp/confirm.py),
            # or are refused when no user is in this ask (a scheduled prompt)
            result = await tools.run(self.dev, call.get("tool"), call.get("args"), self.llm)
        log("tool " + describe(call, result))
        tool, args = call.get("tool"), call.get("args")
        try:
            json.loads(json.dumps((tool, args)))
        except ValueError:  # 1e999 is inf, which json writes as `inf`: the request would be no JSON
            tool, args = str(tool), None
        return {"cid": cid, "tool": tool, "args": args, "result": result}

    def _finish(self, done, done_calls, msgs, actions):
        tier = done.get("tier") if isinstance(done.get("tier"), str) else None
        err = done.get("err")
        text = done.get("text")
        text = text if isinstance(text, str) else ""
        actions += done_calls
        if err:
            return "err", "Error: " + str(err)[:limits.MAX_ASK_TEXT], tier
        if not done_calls:
            return "text", text, tier
        msgs.append({"r": "asst", "t": text,
                     "calls": [{"cid": c["cid"], "tool": c["tool"], "args": c["args"]} for c in done_calls]})
        ok = True
        for c in done_calls:
            msgs.append({"r": "tool", "cid": c["cid"], "t": c["result"]})
            ok = ok and c["result"].startswith("ok:")
        # One round for actions (docs/protocol.md): the model's own words next to calls that all
        # acted and succeeded are the reply. A read, a held call or an error needs another round.
        if ok and text.strip():
            return "text", text, tier
        return "calls", None, tier
