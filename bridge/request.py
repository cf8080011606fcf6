"""Read and check one device `llm/req` (docs/protocol.md), so the rest of the bridge sees only valid requests."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from bridge import protocol
from bridge.config import REQUEST_CLASSES
from bridge.translate import to_openai_messages

MAX_REQUEST_BYTES = 64 * 1024
MAX_ID_CHARS = protocol.MAX_ID
DEFAULT_BUDGET_MS = protocol.ROUND_TIMEOUT_MS  # a request without budget_ms: the device's own round timeout
# For an oversized request we do not parse the JSON; these find the id and round near its start, if there.
MAX_FACTS_CHARS = 2048  # the device sends at most MAX_FACTS_PROMPT_BYTES (512); room for other firmware
_PEEK_BYTES = 1024
_PEEK_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,%d})"' % MAX_ID_CHARS)
_PEEK_ROUND = re.compile(rb'"round"\s*:\s*(\d{1,6})\b')


class RequestError(Exception):
    """A reason to refuse the request, phrased for the person who asked."""


@dataclass
class LlmRequest:
    req_class: str
    budget_ms: int
    messages: list[dict]  # OpenAI chat messages, without the system prompt
    hash: str | None
    facts: list[str] = field(default_factory=list)  # "key: value" lines the device remembers


def read(payload: bytes) -> tuple[dict | None, str | None, int | None, str | None]:
    """(request, id, round, problem). id is None when nobody could be answered."""
    if len(payload) > MAX_REQUEST_BYTES:
        head = payload[:_PEEK_BYTES]
        m_id, m_round = _PEEK_ID.search(head), _PEEK_ROUND.search(head)
        req_id = m_id.group(1).decode("utf-8", "replace") if m_id else None
        return (None, req_id, int(m_round.group(1)) if m_round else None,
                f"request too large: {len(payload)} bytes (limit {MAX_REQUEST_BYTES})")
    try:
        req = json.loads(payload)
    except ValueError as e:  # UnicodeDecodeError is a ValueError too
        return None, None, None, f"not JSON ({e})"
    except RecursionError:  # json.loads recurses per nesting level; hostile input can exhaust the stack
        return None, None, None, "JSON nested too deeply"
    if not isinstance(req, dict):
        return None, None, None, f"not a JSON object (a {type(req).__name__})"
    req_id = req.get("id")
    if not isinstance(req_id, str) or not 1 <= len(req_id) <= MAX_ID_CHARS:
        return None, None, None, f"id must be a string of 1-{MAX_ID_CHARS} characters, got {req_id!r:.60}"
    round_ = req.get("round")
    return req, req_id, round_ if is_int(round_) and round_ >= 0 else None, None


def check(req: dict, round_: int | None) -> LlmRequest:
    """The request's fields, checked; RequestError says what is wrong."""
    if req.get("v") != 1:
        raise RequestError(f"unsupported protocol version v={req.get('v')!r}; this bridge speaks v=1")
    if round_ is None:
        raise RequestError("round must be an integer >= 0")
    req_class = req.get("class", "interactive")
    if req_class not in REQUEST_CLASSES:
        raise RequestError(f"class must be one of {', '.join(REQUEST_CLASSES)}, got {req_class!r}")
    budget_ms = req.get("budget_ms")
    if budget_ms is not None and (not is_int(budget_ms) or budget_ms <= 0):
        raise RequestError(f"budget_ms must be a positive integer, got {budget_ms!r}")
    want_hash = req.get("hash")
    if want_hash is not None and not isinstance(want_hash, str):
        raise RequestError("hash must be a string")
    try:
        messages = to_openai_messages(req.get("msgs"))
    except RecursionError:
        raise RequestError("bad request: msgs nested too deeply") from None
    except ValueError as e:
        raise RequestError(f"bad request: {e}") from None
    return LlmRequest(req_class, budget_ms or DEFAULT_BUDGET_MS, messages, want_hash, _facts(req.get("facts")))


def _facts(facts) -> list[str]:
    if facts is None:
        return []
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        raise RequestError("facts must be a list of strings")
    if sum(len(f) for f in facts) > MAX_FACTS_CHARS:
        raise RequestError(f"facts longer than {MAX_FACTS_CHARS} characters in all")
    return facts


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
