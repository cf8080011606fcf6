"""Failover benchmark: premium tier with 10% errors and 5% stalls, commodity 1-3 s to first token, interactive
requests with a 300 ms budget. Time to first tool instruction and errors reaching devices, for the wisp router
(hedging, deadline-aware failover, breaker) and two baselines in the same run:
  always-premium: one attempt on premium, no deadline of its own (a stall runs into the device's budget);
  retry-then-fallback (LiteLLM-style defaults): up to 2 retries on premium, each attempt without a first-token
  deadline (a stall waits for a 2 s request timeout), then commodity.
Requests run in-process against fake tiers over real HTTP on loopback."""
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.report import percentile, write_section  # noqa: E402
from bridge.config import Tier  # noqa: E402
from bridge.httpclient import HttpClient  # noqa: E402
from bridge.providers import ProviderError, provider_factory  # noqa: E402
from tests.bridge.harness import PORCH_ON, ask, bridge_ctx, config, fake_tiers  # noqa: E402
from tests.fakes.openai_server import Reply  # noqa: E402
from tests.fakes.profiles import COMMODITY, PREMIUM, Profile, profiled  # noqa: E402

REQUESTS = 300
CONCURRENCY = 10
BUDGET_MS = 300
WARMUP = 30  # requests that fill the router's statistics before measuring
SICK_PREMIUM = Profile("premium-sick", PREMIUM.ttft_ms, PREMIUM.tok_per_s, error_rate=0.10, stall_rate=0.05)
BASELINE_TIMEOUT_S = 2.0


def script(req):
    return Reply(calls=[PORCH_ON])


async def run_wisp(prem, comm, tmp):
    cfg = config([Tier("premium", prem.base_url, "p", idle_timeout_s=0.05, first_token_timeout_s=1.0),
                  Tier("commodity", comm.base_url, "c")], tmp)

    async def one(ctx, i, out):
        t0 = time.monotonic()
        msgs = await ask(ctx, f"w{i}", budget_ms=BUDGET_MS)
        calls = [m for m in msgs if m.get("calls")]
        out.append((time.monotonic() - t0) * 1000 if calls and "err" not in msgs[-1] else None)

    cfg.routes["scheduled"] = ["commodity"]
    async with bridge_ctx(cfg) as ctx:
        # a running bridge knows its tiers: scheduled work has shown commodity's 1-3 s, interactive premium's
        await asyncio.gather(*(ask(ctx, f"s{i}", **{"class": "scheduled", "budget_ms": 5000}) for i in range(10)))
        await gather_limited([one(ctx, -i - 1, []) for i in range(WARMUP)])
        out = []
        await gather_limited([one(ctx, i, out) for i in range(REQUESTS)])
        return out


async def baseline(prem, comm, attempts):
    async with HttpClient() as http:
        make = provider_factory(http)
        tiers = {"premium": Tier("premium", prem.base_url, "p", first_token_timeout_s=BASELINE_TIMEOUT_S,
                                 idle_timeout_s=BASELINE_TIMEOUT_S),
                 "commodity": Tier("commodity", comm.base_url, "c")}
        chat = [{"role": "user", "content": "porch on"}]

        async def one(out):
            t0 = time.monotonic()
            for name in attempts:
                try:
                    async for ev in make(tiers[name]).stream_chat(chat):
                        if ev.kind == "call":
                            out.append((time.monotonic() - t0) * 1000)
                            return
                except ProviderError:
                    continue
            out.append(None)

        out = []
        await gather_limited([one(out) for _ in range(REQUESTS)])
        return out


async def gather_limited(coros):
    sem = asyncio.Semaphore(CONCURRENCY)

    async def run(c):
        async with sem:
            await c
    await asyncio.gather(*(run(c) for c in coros))


def row(name, results):
    ok = [ms for ms in results if ms is not None and ms <= BUDGET_MS * 10]
    errors = sum(1 for ms in results if ms is None)
    late = sum(1 for ms in results if ms is not None and ms > BUDGET_MS)
    return (f"| {name} | {percentile(ok, 50):.0f} | {percentile(ok, 99):.0f} | {errors} | {late} |"
            if ok else f"| {name} | - | - | {errors} | {late} |")


def main():
    prem_responder = profiled(SICK_PREMIUM, script, seed=7)
    comm_responder = profiled(COMMODITY, script, seed=8)
    with fake_tiers(prem_responder, comm_responder) as (prem, comm), tempfile.TemporaryDirectory() as tmp:
        wisp = asyncio.run(run_wisp(prem, comm, Path(tmp)))
        always = asyncio.run(baseline(prem, comm, ["premium"]))
        retry = asyncio.run(baseline(prem, comm, ["premium", "premium", "premium", "commodity"]))
    lines = ["## Failover: sick premium tier, 300 ms budget",
             "", f"{REQUESTS} interactive requests, {CONCURRENCY} concurrent, in-process against fake tiers "
             f"(premium {PREMIUM.ttft_ms[0]:.0f}-{PREMIUM.ttft_ms[1]:.0f} ms to first token with 10% HTTP 500/503 "
             "and 5% stalls after the first chunk; commodity 1-3 s). Time to the first tool instruction; "
             "errors = no instruction at all; late = after the 300 ms budget (the device has given up).",
             "", "| strategy | p50 ms | p99 ms | errors | late |", "|---|---|---|---|---|",
             row("wisp router (hedge + deadline-aware failover)", wisp), row("always-premium", always),
             row("retry-then-fallback", retry)]
    text = "\n".join(lines)
    print(text)
    write_section("bridge-failover", text)


if __name__ == "__main__":
    main()
