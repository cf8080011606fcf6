"""Tier profiles for the fake provider: timing and failure rates drawn per request, like a real tier's tail.

Defaults follow the design table: premium ~1,000 tok/s and under 200 ms to first token, commodity 1-3 s,
local slower per token. `profiled(profile, script)` wraps a responder so its Replies get the profile's timing
and, at the profile's rates, errors, stalls, malformed chunks and cut streams.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from tests.fakes.openai_server import Reply


@dataclass(frozen=True)
class Profile:
    name: str
    ttft_ms: tuple[float, float]  # uniform range
    tok_per_s: float  # one streamed chunk ~ one token
    error_rate: float = 0.0  # HTTP 500/503 before any byte
    stall_rate: float = 0.0  # stream stops after its first chunk for stall_ms
    malformed_rate: float = 0.0  # a non-JSON data line mid-stream
    cut_rate: float = 0.0  # connection closed after two chunks
    stall_ms: float = 10_000


PREMIUM = Profile("premium", (60, 150), 1000)
COMMODITY = Profile("commodity", (1000, 3000), 150)
LOCAL = Profile("local", (200, 600), 25)
INSTANT = Profile("instant", (0, 0), 0)  # zero-delay tier for overhead benchmarks


def profiled(profile: Profile, script: Callable[[dict], Reply] = lambda req: Reply(text="ok"),
             seed: int | None = None) -> Callable[[dict], Reply]:
    rng = random.Random(seed)

    def respond(req: dict) -> Reply:
        reply = script(req)
        lo, hi = profile.ttft_ms
        reply = replace(reply, ttft_ms=rng.uniform(lo, hi),
                        chunk_delay_ms=1000 / profile.tok_per_s if profile.tok_per_s else 0)
        roll = rng.random()
        for rate, change in ((profile.error_rate, {"status": rng.choice((500, 503))}),
                             (profile.stall_rate, {"stall_ms": profile.stall_ms}),
                             (profile.malformed_rate, {"malformed": True}),
                             (profile.cut_rate, {"cut_after_chunks": 2})):
            if roll < rate:
                return replace(reply, **change)
            roll -= rate
        return reply
    return respond
