"""The bridge's token estimate for a request whose tier reported no usage (a cut trailer, a server that never
sends it). Providers count the tools' schemas as prompt, and on a device round they are most of it: an
estimate over the messages alone read an 8.9 KB request as 129 tokens. ~4 characters of compact JSON per
token is what OpenAI-style tokenizers average on such text; tests check it against the fakes' counts."""
from __future__ import annotations

import json

CHARS_PER_TOKEN = 4


def estimate_tokens(messages: list[dict], tools: list[dict] | None = None) -> int:
    chars = len(json.dumps(messages, separators=(",", ":"), ensure_ascii=False))
    if tools:
        chars += len(json.dumps(tools, separators=(",", ":"), ensure_ascii=False))
    return max(1, chars // CHARS_PER_TOKEN)
