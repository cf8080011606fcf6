# What the device owes the broker: replies and cmd/res queued for one sender task, and
# messages that could not go out while the link was down, sent oldest first after a connect.
import asyncio
import json

from wisp import limits
from wisp.log import log


def _bytes(queue):
    n = 0
    for _suffix, payload in queue:
        n += len(payload)
    return n


class Outbox:
    def __init__(self, dev):
        self.dev = dev          # for its link (set once the MQTT client exists) and topics
        self.owed = []          # (suffix, payload) owed while the link was down
        self.answers = []       # (suffix, payload) replies and cmd/res waiting for the sender task
        self._answering = False

    def owe(self, suffix, payload):
        self.owed.append((suffix, payload))
        while len(self.owed) > limits.OUTBOX_MAX or _bytes(self.owed) > limits.OUTBOX_MAX_BYTES:
            self.owed.pop(0)
            log("error: outbox full; oldest owed message dropped")

    def answer(self, suffix, obj):
        """Queue a reply or cmd/res for one sender task, in order. A burst of refusals (20 asks
        at once to a 4-ask inbox) costs a short string each, not a task each, and none is lost
        up to ANSWER_QUEUE_MAX; beyond that they are dropped and counted."""
        text = json.dumps(obj)
        if len(self.answers) >= limits.ANSWER_QUEUE_MAX \
                or _bytes(self.answers) + len(text) > limits.ANSWER_QUEUE_BYTES:
            self.dev.count_drop(suffix)
            return
        self.answers.append((suffix, text))
        if not self._answering:
            self._answering = True
            asyncio.create_task(self._send_answers())

    async def _send_answers(self):
        try:
            while self.answers:
                suffix, payload = self.answers.pop(0)
                if not await self.dev.link.publish(self.dev.topic(suffix), payload, False, 1):
                    self.owe(suffix, payload)  # the link is down: sent after the next connect
        finally:
            self._answering = False

    async def flush(self):
        """Send what is owed, oldest first; stops at the first message the link does not take."""
        while self.owed:
            suffix, payload = self.owed[0]
            if not await self.dev.link.publish(self.dev.topic(suffix), payload, False, 1):
                return
            self.owed.pop(0)
