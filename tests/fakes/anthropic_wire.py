"""The Anthropic messages wire format for the fake provider server: streamed SSE events and error bodies."""
from __future__ import annotations

import json
import re
import uuid

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error", 503: "overloaded_error"}


def error_body(status: int) -> dict:
    etype = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": f"Fake {etype} ({status})."}}


def input_tokens(req: dict) -> int:
    from tests.fakes.openai_server import count_tokens  # one tokenizer stand-in for both fakes
    return max(1, count_tokens([req.get("system", ""), req.get("messages", []), req.get("tools") or []]))


def events(req: dict, reply) -> list[tuple[str, str]]:
    """(event name, data JSON) pairs of one streamed message, as the real API sends them."""
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    out = [("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": req.get("model"), "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens(req), "output_tokens": 1}}}),
        ("ping", {"type": "ping"})]
    index, n_out = 0, 0
    if reply.text:
        out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                            "content_block": {"type": "text", "text": ""}}))
        for piece in re.findall(r"\s*\S+\s*|\s+", reply.text):
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "text_delta", "text": piece}}))
            n_out += 1
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for name, args in reply.calls:
        out.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": {}}}))
        raw, n = json.dumps(args, ensure_ascii=False), max(1, reply.arg_piece_len)
        for k in range(0, len(raw), n):
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "input_json_delta", "partial_json": raw[k:k + n]}}))
            n_out += 1
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    out.append(("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": "tool_use" if reply.calls else "end_turn",
                                            "stop_sequence": None},
                                  "usage": {"output_tokens": max(1, n_out)}}))
    out.append(("message_stop", {"type": "message_stop"}))
    encoded = [(name, json.dumps(data, ensure_ascii=False)) for name, data in out]
    if reply.malformed:
        encoded.insert(min(2, len(encoded)), ("content_block_delta", '{"type": "content_block_delta", "index": '))
    return encoded


def message(req: dict, reply) -> dict:
    """The non-streamed response object."""
    content = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": n, "input": a}
                for n, a in reply.calls]
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": req.get("model"), "content": content,
            "stop_reason": "tool_use" if reply.calls else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens(req), "output_tokens": max(1, len(reply.text) // 4)}}
