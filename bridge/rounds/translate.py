"""Compact device conversation (`msgs` of an llm/req, see docs/protocol.md) -> OpenAI chat messages.

Shapes are checked here so a broken request gets a readable error instead of an opaque HTTP 400 from a tier.
"""
from __future__ import annotations

import json


def to_openai_messages(msgs) -> list[dict]:
    """Raises ValueError naming the offending element, e.g. "msgs[2].calls[0].args must be an object"."""
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("msgs must be a non-empty list")
    out: list[dict] = []
    open_calls: set[str] = set()  # call ids an assistant made; a tool result must answer one of them
    for i, m in enumerate(msgs):
        at = f"msgs[{i}]"
        if not isinstance(m, dict):
            raise ValueError(f"{at} must be an object")
        role = m.get("r")
        if role == "user":
            out.append({"role": "user", "content": _text(m, at, required=True)})
        elif role == "asst":
            out.append(_assistant(m, at, open_calls))
        elif role == "tool":
            cid = _str(m.get("cid"), f"{at}.cid")
            if cid not in open_calls:
                raise ValueError(f"{at} is a result for call {cid!r}, which no earlier asst message made")
            out.append({"role": "tool", "tool_call_id": cid, "content": _text(m, at, required=True)})
        else:
            raise ValueError(f"{at}.r must be 'user', 'asst' or 'tool', got {role!r}")
    return out


def _assistant(m: dict, at: str, open_calls: set[str]) -> dict:
    text = _text(m, at, required=False)
    calls = m.get("calls", [])
    if not isinstance(calls, list):
        raise ValueError(f"{at}.calls must be a list")
    tool_calls = []
    for j, c in enumerate(calls):
        cat = f"{at}.calls[{j}]"
        if not isinstance(c, dict):
            raise ValueError(f"{cat} must be an object")
        cid, tool = _str(c.get("cid"), f"{cat}.cid"), _str(c.get("tool"), f"{cat}.tool")
        args = c.get("args", {})
        if not isinstance(args, dict):
            raise ValueError(f"{cat}.args must be an object")
        open_calls.add(cid)
        # OpenAI wants arguments as a JSON *string*, exactly as the model produced it
        tool_calls.append({"id": cid, "type": "function",
                           "function": {"name": tool, "arguments": json.dumps(args, separators=(",", ":"))}})
    if not tool_calls:
        return {"role": "assistant", "content": text}
    # content null (not "") next to tool_calls is what OpenAI itself returns; some servers reject "" there
    return {"role": "assistant", "content": text or None, "tool_calls": tool_calls}


def _text(m: dict, at: str, required: bool) -> str:
    if "t" not in m:
        if required:
            raise ValueError(f"{at}.t (the text) is missing")
        return ""
    if not isinstance(m["t"], str):
        raise ValueError(f"{at}.t must be a string")
    return m["t"]


def _str(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value
