"""The baseline that 'added latency' is measured against: the fake tier asked directly over
HTTP (streamed), with nothing of wisp in between."""
import time

import aiohttp


async def direct_latencies(url, requests):
    """Milliseconds per streamed chat completion asked of `url` (an OpenAI-compatible /v1)."""
    out = []
    async with aiohttp.ClientSession() as s:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "porch on"}]}
        for _ in range(requests):
            t0 = time.perf_counter()
            async with s.post(url + "/chat/completions", json=body) as r:
                await r.read()
            out.append((time.perf_counter() - t0) * 1000)
    return out
