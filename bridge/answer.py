"""The llm/res stream of one round (docs/protocol.md): numbered by seq, exactly one `done`, every message sized
to fit the device's payload limit.
"""
from __future__ import annotations

import json
import logging
from typing import Callable

from bridge import protocol

log = logging.getLogger("wisp.bridge.answer")

DEVICE_MAX_PAYLOAD = protocol.MAX_PAYLOAD  # the device discards bigger llm/res messages unread


class Answer:
    """The llm/res stream of one round: numbers messages by seq and sends exactly one `done`."""

    def __init__(self, publish: Callable[[str, dict], None], device_id: str, req_id: str, round_: int | None):
        self._publish = publish
        self.topic = protocol.topic(device_id, protocol.LLM_RES)
        self.req_id, self.round = req_id, round_
        self.seq = 0
        self.calls = 0
        self.done = False
        self.tier: str | None = None
        self.error: str | None = None
        self.sent: list[dict] = []  # every message published, for replay to a device that re-sends

    def _send(self, body: dict, trim: str | None = None) -> None:
        msg = {"v": 1, "id": self.req_id, "round": self.round, "seq": self.seq, **body}
        if self.tier:
            msg["tier"] = self.tier
        msg = _fit(msg, trim) if trim else msg
        self.sent.append(msg)
        self._publish(self.topic, msg)
        self.seq += 1

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
        self._send(body, trim="text")
        self.done = True

    def fail(self, err: str) -> None:
        self.error = err
        self._send({"done": True, "err": err}, trim="err")
        self.done = True


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
    return len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())


def show_id(req_id) -> str:
    """Request ids are chosen by whoever asks: keep them from breaking the one-line-per-event log."""
    return req_id if isinstance(req_id, str) and req_id.isprintable() else repr(req_id)
