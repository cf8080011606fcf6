"""How one device round ended, as the round itself saw it. The handler builds one per answered `llm/req`;
replay (dedupe), cost, metrics, the dashboard's events and the log line all read it, none re-parses messages."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from bridge.config import Tier
from bridge.reasons import Reason

MAX_CALL_TEXT = 120  # characters of one tool call shown on the dashboard


@dataclass
class TierSpend:
    """Tokens one tier used for the round (summed over its model turns); cost_usd is set once it is charged."""
    tier: Tier
    tokens_in: int = 0
    tokens_out: int = 0
    estimated: bool = False  # the tier sent no usage: ~4 characters per token
    cost_usd: float = 0.0


@dataclass
class Outcome:
    device: str
    req_id: str
    round: int | None
    req_class: str  # a request class, or "invalid" for a request whose class could not be read
    tier: str | None  # the tier that answered (or failed last); None if none was tried
    calls: int  # tool calls forwarded to the device
    reason: Reason | None  # None: answered
    error: str | None  # the `err` text the device got
    usage: dict | None  # the `usage` the device got ({"in", "out"}), None when not reported
    sent: list[dict]  # every llm/res published, for replay to a device that re-sends
    first_output_s: float | None  # llm/req received -> first llm/res published
    total_s: float  # llm/req received -> `done` published
    spend: list[TierSpend] = field(default_factory=list)
    replayed: bool = False  # answered again from `sent`, without a model call

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def tokens(self) -> int:
        return sum(s.tokens_in + s.tokens_out for s in self.spend)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.spend)

    def event(self) -> dict:
        """The dashboard's tier-decision event (bridge/web/events.py), with the tool calls the model made."""
        usage = self.usage or {}
        return {"type": "tier", "device": self.device, "id": self.req_id, "round": self.round,
                "class": self.req_class, "tier": self.tier, "ok": self.ok, "err": self.error,
                "ms": round(self.total_s * 1000, 1), "tokens_in": usage.get("in"), "tokens_out": usage.get("out"),
                "calls": self.call_texts(), "replayed": self.replayed, "ts": time.time()}

    def call_texts(self) -> list[str]:
        """`gpio_write(pin=porch_light, value=1)` for each tool call sent to the device, in order."""
        texts = []
        for msg in self.sent:
            for call in msg.get("calls") or []:
                args = call.get("args") if isinstance(call.get("args"), dict) else {}
                texts.append(f"{call.get('tool')}({', '.join(f'{k}={v}' for k, v in args.items())})"[:MAX_CALL_TEXT])
        return texts


def answer_record(outcome: Outcome) -> dict:
    """What a shared store keeps of an answer, for another bridge to replay it (replay_outcome)."""
    return {"sent": outcome.sent, "reason": outcome.reason.value if outcome.reason else None,
            "class": outcome.req_class, "tier": outcome.tier, "calls": outcome.calls,
            "error": outcome.error, "usage": outcome.usage}


def replay_outcome(key: tuple, record: dict) -> Outcome:
    """The Outcome of an answer another bridge gave (answer_record), for Answer.replay()."""
    device, req_id, round_ = key
    return Outcome(device, req_id, round_, record.get("class") or "interactive", record.get("tier"),
                   record.get("calls") or 0, Reason(record["reason"]) if record.get("reason") else None,
                   record.get("error"), record.get("usage"), record["sent"], None, 0.0)
