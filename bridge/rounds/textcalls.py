"""Tool calls a model wrote as text. A server parses its model's call format only when it knows it: llama-server
learns it from the chat template (one it cannot analyse gives no parser), Ollama from its model file; otherwise
the call arrives as the turn's text, `<tool_call>{"name": ...}</tool_call>`, and the user would read JSON while
nothing happens. Read here, in the formats local models are trained to write, and only for tools the round
offered:

- Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one or more, words around them kept
  as the model's text;
- Llama 3.x: the whole turn one JSON object `{"name": ..., "parameters": {...}}` (or "arguments"), or a list of
  them, in a ```json fence or not;
- Mistral: `[TOOL_CALLS]` and a JSON list of calls.
"""
from __future__ import annotations

import json
import re
from collections.abc import Container

from bridge.providers.base import ToolCall

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_MISTRAL = "[TOOL_CALLS]"


def calls_in_text(text: str, names: Container[str]) -> tuple[str, list[ToolCall]] | None:
    """(the words around the calls, the calls) when `text` is tool calls in one of the formats above, each to a
    tool in `names`; None otherwise (the text is the model's answer as it is)."""
    stripped = text.strip()
    if "<tool_call>" in stripped:
        blocks = _TAGGED.findall(stripped)
        words = _TAGGED.sub("", stripped).strip()
        if not blocks or "<tool_call>" in words or "</tool_call>" in words:
            return None  # an unclosed or stray tag: not calls the model finished
        found = [_one(_json(b), names) for b in blocks]
    elif stripped.startswith(_MISTRAL):
        words, found = "", _many(_json(stripped[len(_MISTRAL):]), names)
    else:
        fenced = _FENCE.match(stripped)
        words, found = "", _many(_json(fenced.group(1) if fenced else stripped), names)
    if not found or any(c is None for c in found):
        return None
    return words, found


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _many(value, names) -> list[ToolCall | None] | None:
    if isinstance(value, dict):
        return [_one(value, names)]
    if isinstance(value, list) and value:
        return [_one(v, names) for v in value]
    return None


def _one(value, names) -> ToolCall | None:
    """A call {"name", "arguments" | "parameters"} to an offered tool; arguments may be a JSON string."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or value["name"] not in names:
        return None
    if set(value) - {"name", "arguments", "parameters", "id", "type"}:
        return None  # more than a call: some other object that happens to carry a tool's name
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        args = _json(args) if args.strip() else {}
    if not isinstance(args, dict):
        return None
    return ToolCall(cid=str(value.get("id") or ""), name=value["name"], args=args, raw_args=json.dumps(args))
