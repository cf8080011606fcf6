"""Read and check one device `llm/req` (docs/protocol.md), so the rest of the bridge sees only valid requests."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from bridge import fastjson, protocol
from bridge.config import REQUEST_CLASSES
from bridge.reasons import Failure, Reason
from bridge.rounds.translate import to_openai_messages

MAX_REQUEST_BYTES = 64 * 1024
MAX_ID_CHARS = protocol.MAX_ID
DEFAULT_BUDGET_MS = protocol.ROUND_TIMEOUT_MS  # a request without budget_ms: the device's own round timeout
# For a request too large to parse, or one that does not parse, these find the id and round near its
# start, if there: the device is answered with the reason instead of waiting out its round timeout.
MAX_FACTS_CHARS = 2048  # the device sends at most MAX_FACTS_PROMPT_BYTES (512); room for other firmware
_PEEK_BYTES = 1024
_PEEK_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,%d})"' % MAX_ID_CHARS)
_PEEK_ROUND = re.compile(rb'"round"\s*:\s*(\d{1,6})\b')


@dataclass
class LlmRequest:
    req_class: str
    budget_ms: int
    messages: list[dict]  # OpenAI chat messages, without the system prompt
    hash: str | None
    facts: list[str] = field(default_factory=list)  # "key: value" lines the device remembers


class Envelope(NamedTuple):
    """What identifies a request, read before its fields are checked. req_id is None when nobody can be answered."""
    body: dict | None
    req_id: str | None
    round: int | None
    problem: str | None  # why the request cannot be worked on, None if it may be

    @property
    def class_label(self) -> str:
        """The request class for metrics and events: "invalid" when it is not one."""
        cls = self.body.get("class", "interactive") if self.body is not None else None
        return cls if isinstance(cls, str) and cls in REQUEST_CLASSES else "invalid"


def read(payload: bytes) -> Envelope:
    if len(payload) > MAX_REQUEST_BYTES:
        return _peeked(payload, f"request too large: {len(payload)} bytes (limit {MAX_REQUEST_BYTES})")
    try:
        req = fastjson.loads(payload)
    except ValueError as e:  # UnicodeDecodeError is a ValueError too, and so is nesting too deep to read
        return _peeked(payload, f"not JSON ({e})")
    if not isinstance(req, dict):
        return Envelope(None, None, None, f"not a JSON object (a {type(req).__name__})")
    req_id = req.get("id")
    if not isinstance(req_id, str) or not 1 <= len(req_id) <= MAX_ID_CHARS:
        return Envelope(None, None, None, f"id must be a string of 1-{MAX_ID_CHARS} characters, got {req_id!r:.60}")
    round_ = req.get("round")
    return Envelope(req, req_id, round_ if is_int(round_) and round_ >= 0 else None, None)


def _peeked(payload: bytes, problem: str) -> Envelope:
    """The envelope of a request that is not parsed: its id and round when found near its start."""
    head = payload[:_PEEK_BYTES]
    m_id, m_round = _PEEK_ID.search(head), _PEEK_ROUND.search(head)
    req_id = m_id.group(1).decode("utf-8", "replace") if m_id else None
    return Envelope(None, req_id, int(m_round.group(1)) if m_round else None, problem)


def budget_ms(req: dict | None) -> int:
    """The request's time budget as check() reads it, from a request that may not pass check()."""
    budget = req.get("budget_ms") if isinstance(req, dict) else None
    return budget if is_int(budget) and budget > 0 else DEFAULT_BUDGET_MS


def check(req: dict, round_: int | None) -> LlmRequest:
    """The request's fields, checked; Failure (BAD_REQUEST) says what is wrong."""
    if not protocol.speaks_v1(req):
        raise _bad(f"unsupported protocol version v={json.dumps(req.get('v'))}; this bridge speaks v=1")
    if round_ is None:
        raise _bad("round must be an integer >= 0")
    req_class = req.get("class", "interactive")
    if req_class not in REQUEST_CLASSES:
        raise _bad(f"class must be one of {', '.join(REQUEST_CLASSES)}, got {req_class!r}")
    budget_ms = req.get("budget_ms")
    if budget_ms is not None and (not is_int(budget_ms) or budget_ms <= 0):
        raise _bad(f"budget_ms must be a positive integer, got {budget_ms!r}")
    want_hash = req.get("hash")
    if want_hash is not None and not isinstance(want_hash, str):
        raise _bad("hash must be a string")
    try:
        messages = to_openai_messages(req.get("msgs"))
    except RecursionError:
        raise _bad("bad request: msgs nested too deeply") from None
    except ValueError as e:
        raise _bad(f"bad request: {e}") from None
    return LlmRequest(req_class, budget_ms or DEFAULT_BUDGET_MS, messages, want_hash, _facts(req.get("facts")))


def _facts(facts) -> list[str]:
    if facts is None:
        return []
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        raise _bad("facts must be a list of strings")
    if sum(len(f) for f in facts) > MAX_FACTS_CHARS:
        raise _bad(f"facts longer than {MAX_FACTS_CHARS} characters in all")
    return facts


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _bad(message: str) -> Failure:
    return Failure(Reason.BAD_REQUEST, message)
