"""The llm/res stream of one round (docs/protocol.md): numbered by seq, exactly one `done`, every message sized
to fit the device's payload limit and signed for a device whose key the bridge holds. It keeps what the round's
Outcome reports: tier, calls, error, timings and every message sent.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bridge import fastjson, protocol
from bridge.reasons import Failure, Reason
from bridge.rounds.outcome import Outcome, TierSpend
from bridge.signing import sign_message

log = logging.getLogger("wisp.bridge.rounds.answer")

DEVICE_MAX_PAYLOAD = protocol.MAX_PAYLOAD  # the device discards bigger llm/res messages unread


class Answer:
    """publish(topic, payload) sends one MQTT message (MqttLink.publish). key: the device's signing key, if any.
    received: monotonic time the llm/req arrived, from which the outcome's timings count."""

    def __init__(self, publish: Callable[[str, dict | bytes], None], device_id: str, req_id: str,
                 round_: int | None, key: bytes | None = None, received: float | None = None,
                 bind: str | None = None):
        self._publish = publish
        self._key = key
        self._bind = bind  # signed devices: the request's hash, so the answer fits that request only
        self.device_id = device_id
        self.topic = protocol.topic(device_id, protocol.LLM_RES)
        self.req_id, self.round = req_id, round_
        self.received = time.monotonic() if received is None else received
        self.seq = 0
        self.calls = 0
        self.done = False
        self.tier: str | None = None
        self.failure: Failure | None = None
        self.usage: dict | None = None
        self.sent: list[dict] = []
        self._first_at: float | None = None
        self._done_at: float | None = None

    def _send(self, body: dict, trim: str | None = None) -> None:
        msg = {"v": 1, "id": self.req_id, "round": self.round, "seq": self.seq, **body}
        if self._bind:
            msg["req"] = self._bind
        if self.tier:
            msg["tier"] = self.tier
        msg = _fit(msg, trim) if trim else msg
        self.sent.append(msg)
        self._put(msg)
        self.seq += 1

    def _put(self, msg: dict) -> None:
        self._publish(self.topic, sign_message(self._key, msg) if self._key else msg)
        now = time.monotonic()
        self._first_at = self._first_at or now
        if msg.get("done"):
            self._done_at = now

    def call(self, cid: str, tool: str, args: dict) -> None:
        msg = {"calls": [{"cid": cid, "tool": tool, "args": args}], "done": False}
        if _size({"v": 1, "id": self.req_id, "round": self.round, "seq": self.seq, "tier": self.tier, **msg}) \
                > DEVICE_MAX_PAYLOAD:
            # The device would drop the whole message; empty args make it answer "Error: ..." the LLM can read.
            log.warning("id=%s call %s args too large for the device; sent as {}", show_id(self.req_id), tool)
            msg["calls"][0]["args"] = {}
        self._send(msg)
        self.calls += 1

    def finish(self, text: str, usage: dict | None) -> None:
        body = {"done": True, "text": text}
        if usage:
            body["usage"] = usage
        self.usage = usage or None
        self._send(body, trim="text")
        self.done = True

    def fail(self, failure: Failure) -> None:
        self.failure = failure
        self._send({"done": True, "err": failure.message}, trim="err")
        self.done = True

    def replay(self, earlier: Outcome) -> Outcome:
        """Publish an earlier answer to this request again, same seqs (no model call, no new actions)."""
        for msg in earlier.sent:
            self._put(msg)
        return Outcome(**{**vars(earlier), "first_output_s": self._since(self._first_at),
                          "total_s": self._since(self._done_at), "spend": [], "replayed": True})

    def outcome(self, req_class: str, spend: list[TierSpend] = ()) -> Outcome:
        err = self.sent[-1].get("err") if self.failure else None  # as sent: trimmed to fit
        return Outcome(self.device_id, self.req_id, self.round, req_class, self.tier, self.calls,
                       self.failure.reason if self.failure else None if self.done else Reason.INTERNAL,
                       err, self.usage, self.sent, self._since(self._first_at),
                       self._since(self._done_at or time.monotonic()), list(spend))

    def _since(self, t: float | None) -> float | None:
        return None if t is None else t - self.received


def _fit(msg: dict, field: str) -> dict:
    """Trim msg[field] so the encoded message fits the device's MAX_PAYLOAD."""
    over = _size(msg) - DEVICE_MAX_PAYLOAD
    if over <= 0:
        return msg
    raw = msg[field].encode()
    # JSON escapes can make a byte cost more than one; a few passes always converge (each cuts >= `over`).
    for _ in range(8):
        raw = raw[:max(0, len(raw) - over - 8)]
        msg = {**msg, field: raw.decode("utf-8", "ignore") + "…"}
        over = _size(msg) - DEVICE_MAX_PAYLOAD
        if over <= 0:
            break
    log.warning("id=%s: %s trimmed to fit the device's %d-byte payload limit",
                show_id(msg.get("id")), field, DEVICE_MAX_PAYLOAD)
    return msg


def _size(msg: dict) -> int:
    return len(fastjson.dumps(msg))


def show_id(req_id) -> str:
    """Request ids are chosen by whoever asks: keep them from breaking the one-line-per-event log."""
    return req_id if isinstance(req_id, str) and req_id.isprintable() else repr(req_id)
