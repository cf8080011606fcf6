"""Routing across tiers over real HTTP: breaker states, statistics, deadline-aware choice, first-token hedging,
transparent failover before a tool call was forwarded and a clear error after, quirky servers."""
import asyncio
import random
import time

import pytest

from bridge.config import Tier
from bridge.routing.breaker import Breaker
from bridge.routing.stats import MIN_SAMPLES, WINDOW, Series, TierStats, percentile
from tests.bridge.harness import PORCH_ON, ask, bridge_ctx, config, fake_tiers, run
from tests.fakes.openai_server import Reply


def tier(name, fake, **kw):
    return Tier(name, fake.base_url, "fake-model", **kw)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_breaker_opens_probes_once_and_closes():
    clock = Clock()
    b = Breaker(clock=clock, failures_to_open=3, cool_down_s=5)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow() and b.retry_in_s() == 5
    clock.t += 5
    assert b.allow() and b.state == "half-open"
    assert not b.allow()  # one probe at a time
    b.failure()  # failed probe: open again, longer cool-down
    assert b.state == "open" and b.cool_down_s == 10
    clock.t += 10
    assert b.allow()
    b.abandoned()  # a cancelled probe gives its slot back
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow() and b.cool_down_s == 5


def test_stats_ewma_percentiles_and_error_rate():
    s = TierStats()
    for ms in range(1, 101):
        s.first_output(ms)
        s.finished(100, 0.1)
    s.failed()
    snap = s.snapshot()
    assert snap["ttft_ms"]["p50"] in (50, 51) and snap["ttft_ms"]["p99"] in (99, 100)
    assert 80 < snap["ttft_ms"]["ewma"] < 100  # recent samples weigh most
    assert snap["tok_s"]["p50"] == 1000
    assert snap["requests"] == 101 and snap["errors"] == 1 and snap["error_rate"] == round(1 / 101, 3)
    fresh = TierStats()
    for ms in range(MIN_SAMPLES - 1):
        fresh.first_output(ms)
    assert fresh.ttft_ms.p(50) is None  # too few samples: latency unknown


def test_hedge_starts_next_tier_and_keeps_the_first_to_stream(tmp_path):
    slow = lambda req: Reply(calls=[PORCH_ON], ttft_ms=2000)  # noqa: E731
    fast = lambda req: Reply(calls=[PORCH_ON], ttft_ms=20)  # noqa: E731
    with fake_tiers(slow, fast) as (a, b):
        cfg = config([tier("premium", a, hedge_after_s=0.1), tier("commodity", b)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                t0 = time.monotonic()
                msgs = await ask(ctx, "h1")
                return msgs, time.monotonic() - t0, ctx.router.snapshot()
        msgs, took, snap = run(go())
    assert msgs[0]["calls"][0]["args"] == PORCH_ON[1] and msgs[-1]["tier"] == "commodity"
    assert len(msgs) == 2 and "err" not in msgs[-1]
    assert took < 1.0  # did not wait for the slow tier's 2 s
    assert len(a.requests) == 1 and len(b.requests) == 1  # one hedge, no more
    assert snap["premium"]["breaker"] == "closed" and snap["premium"]["errors"] == 0  # losing is not failing


def test_failover_before_any_call_is_transparent(tmp_path):
    broken = [Reply(status=500), Reply(text="half an answer that is cut", cut_after_chunks=3),
              Reply(text="stalls", stall_ms=5000), Reply(text="bad", malformed=True)]
    with fake_tiers(lambda req: broken[len(a.requests) - 1], lambda req: Reply(calls=[PORCH_ON])) as (a, b):
        cfg = config([tier("premium", a, idle_timeout_s=0.2), tier("commodity", b)], tmp_path)
        cfg.routes["interactive"] = ["premium", "commodity"]

        async def go():
            async with bridge_ctx(cfg) as ctx:
                out = [await ask(ctx, f"f{i}") for i in range(len(broken))]
                return out, ctx.router.snapshot()
        answers, snap = run(go())
    for msgs in answers:
        assert [m["seq"] for m in msgs] == [0, 1] and msgs[-1]["done"] and "err" not in msgs[-1]
        assert msgs[0]["calls"][0]["tool"] == "gpio_write" and msgs[-1]["tier"] == "commodity"
        assert "text" not in msgs[-1] or msgs[-1]["text"] == ""  # no text from the failed attempt leaks in
    assert snap["premium"]["errors"] == 4 and snap["commodity"]["errors"] == 0


def test_failure_after_a_forwarded_call_is_a_clear_error(tmp_path):
    two_calls_cut = lambda req: Reply(calls=[PORCH_ON, ("gpio_write", {"pin": "porch_light", "value": 0})],  # noqa
                                      cut_after_chunks=12, arg_piece_len=4)  # inside the 2nd call
    with fake_tiers(two_calls_cut, lambda req: Reply(calls=[PORCH_ON])) as (a, b):
        cfg = config([tier("premium", a), tier("commodity", b)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "x1")
        msgs = run(go())
    assert len(msgs) == 2 and msgs[0]["calls"][0]["args"] == PORCH_ON[1]
    assert "not retried so that no action runs twice" in msgs[-1]["err"] and msgs[-1]["tier"] == "premium"
    assert b.requests == []  # the action was never asked of another tier


def test_deadline_aware_choice_skips_a_tier_too_slow_for_the_budget(tmp_path):
    with fake_tiers(lambda req: Reply(text="slow"), lambda req: Reply(text="fast")) as (a, b):
        cfg = config([tier("commodity", a), tier("premium", b)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                for _ in range(MIN_SAMPLES):
                    ctx.router.stats["commodity"].first_output(2000)  # history: ~2 s to first output
                short = await ask(ctx, "d1", budget_ms=500)
                long = await ask(ctx, "d2", budget_ms=10_000)
                return short, long
        short, long = run(go())
    assert short[-1]["tier"] == "premium" and short[-1]["text"] == "fast"
    assert long[-1]["tier"] == "commodity"  # the route's first choice when the deadline allows it


def test_open_breaker_skips_the_tier_and_a_lone_sick_tier_answers_at_once(tmp_path):
    with fake_tiers(lambda req: Reply(status=503), lambda req: Reply(text="ok")) as (a, b):
        clock = Clock()
        cfg = config([tier("premium", a), tier("commodity", b)], tmp_path)

        async def go():
            async with bridge_ctx(cfg, clock=clock) as ctx:
                for i in range(5):  # each fails over after one premium error; the 5th error opens the breaker
                    assert (await ask(ctx, f"o{i}"))[-1]["text"] == "ok"
                before = len(a.requests)
                skipped = await ask(ctx, "o-skip")
                cfg.routes["interactive"] = ["premium"]
                t0 = time.monotonic()
                alone = await ask(ctx, "o-alone")
                return ctx.router.breakers["premium"].state, before, skipped, alone, time.monotonic() - t0
        state, before, skipped, alone, took = run(go())
    assert state == "open" and len(a.requests) == before == 5
    assert skipped[-1]["tier"] == "commodity"
    assert "circuit open" in alone[-1]["err"] and took < 0.1


def test_a_tier_refusing_its_configuration_is_not_retried_and_its_message_reaches_the_user(tmp_path):
    with fake_tiers(lambda req: Reply(status=404), lambda req: Reply(text="ok")) as (a, b):
        cfg = config([tier("premium", a), tier("commodity", b)], tmp_path)
        cfg.routes["interactive"] = ["premium"]

        async def go():
            async with bridge_ctx(cfg) as ctx:
                alone = [await ask(ctx, f"r{i}") for i in range(6)]     # more than the breaker's threshold
                state = ctx.router.breakers["premium"].state
                cfg.routes["interactive"] = ["premium", "commodity"]
                over = await ask(ctx, "r-over")
                return alone, state, over
        alone, state, over = run(go())
    for msgs in alone:
        err = msgs[-1]["err"]
        assert err.startswith("tier 'premium' refused the request (HTTP 404") and "does not exist" in err, err
        assert "again shortly" not in err
    assert len(a.requests) == 6 + 1           # one attempt per ask: the same request would be refused again
    assert state == "closed"                  # a wrong model name says nothing about the tier being down
    assert over[-1]["text"] == "ok" and over[-1]["tier"] == "commodity"    # another tier still takes over


def test_a_full_tier_queues_requests_in_order_instead_of_refusing_them(tmp_path):
    with fake_tiers(lambda req: Reply(text="ok", ttft_ms=100)) as (a,):
        cfg = config([tier("premium", a, max_concurrency=1)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                peak = 0

                async def watch():
                    nonlocal peak
                    while True:
                        peak = max(peak, ctx.router.in_flight["premium"])
                        await asyncio.sleep(0.005)
                watcher = asyncio.create_task(watch())
                answers = await asyncio.gather(*(ask(ctx, f"q{i}") for i in range(6)))
                watcher.cancel()
                return answers, peak
        answers, peak = run(go())
    assert [msgs[-1].get("text") for msgs in answers] == ["ok"] * 6, answers    # none refused as busy
    assert peak == 1 and len(a.requests) == 6


def test_an_empty_model_turn_is_an_error_not_a_blank_ok(tmp_path):
    with fake_tiers(lambda req: Reply(text="")) as (a,):
        cfg = config([tier("premium", a)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "e1")
        msgs = run(go())
    assert msgs[-1]["done"] and "answered with nothing" in msgs[-1]["err"]


def test_server_rejecting_stream_options_is_retried_without_it(tmp_path):
    with fake_tiers(lambda req: Reply(text="fine"), reject_stream_options=True) as (a,):
        cfg = config([tier("local", a)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "s1"), await ask(ctx, "s2")
        first, second = run(go())
    assert first[-1]["text"] == second[-1]["text"] == "fine"
    assert ["stream_options" in r for r in a.requests] == [True, False, False]  # remembered after one 400
    assert "usage" not in first[-1]  # the server sent none: not made up for the device (estimated for cost)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_both_providers_behind_one_interface(tmp_path, provider):
    with fake_tiers(lambda req: Reply(text="Done.", calls=[PORCH_ON])) as (a,):
        cfg = config([tier("local", a, provider=provider)], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                return await ask(ctx, "p1")
        msgs = run(go())
    assert msgs[0]["calls"][0]["args"] == PORCH_ON[1] and msgs[-1]["text"] == "Done."
    assert msgs[-1]["usage"]["in"] > 0 and msgs[-1]["usage"]["out"] > 0
    assert a.paths == ["/v1/messages" if provider == "anthropic" else "/v1/chat/completions"]


def test_live_percentiles_follow_the_sliding_window():
    rng = random.Random(7)
    s = Series()
    for n in range(WINDOW * 3):
        s.add(rng.choice([rng.random() * 100, 5.0]))  # repeated values too: the oldest copy leaves first
        if n % 37 == 0 or n > WINDOW * 3 - 3:
            for q in (50, 90, 95, 99):
                assert s.p(q) == (percentile(list(s.window), q) if n + 1 >= MIN_SAMPLES else None)


@pytest.mark.parametrize("kw, first_chunk", [({"hedge_after_s": 0.2}, False), ({"idle_timeout_s": 0.2}, True)])
def test_a_given_up_tier_stream_is_closed_at_once(tmp_path, kw, first_chunk):
    """A hedge that lost, or a stream that stalled, is closed when the bridge gives it up: the tier stops
    generating (and billing) then, not when the rest of its body would have been waited for."""
    closed = []

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        if first_chunk:
            data = b'data: {"choices": [{"index": 0, "delta": {"content": "hel"}, "finish_reason": null}]}\n\n'
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        t0 = time.monotonic()
        await reader.read()  # b"" once the bridge closes the connection; the stream never goes on
        closed.append(time.monotonic() - t0)
        writer.close()

    async def go():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        with fake_tiers(lambda req: Reply(text="fast")) as (b,):
            cfg = config([Tier("premium", url, "m", **kw), tier("commodity", b)], tmp_path)
            async with bridge_ctx(cfg) as ctx:
                msgs = await ask(ctx, "g1")
                await asyncio.sleep(0.7)
        server.close()
        return msgs
    msgs = run(go())
    assert msgs[-1]["text"] == "fast" and msgs[-1]["tier"] == "commodity"
    assert closed and closed[0] < 0.5, closed  # given up at ~0.2 s; it used to stay open 1 s longer


def test_a_first_tier_down_at_start_is_tried_again_and_its_breaker_probed(tmp_path):
    """Route [local, premium]: local fails its first requests (down when the bridge started), premium becomes
    known-fast. Evidence alone would never ask local again; once per EXPLORE_S a request tries it first, its
    breaker is probed and closes, and once it has statistics the route's order holds again."""
    from bridge.routing import router as routing
    from bridge.routing.stats import MIN_SAMPLES
    local_up = {"up": False}
    with fake_tiers(lambda req: Reply(text="local") if local_up["up"] else Reply(status=503),
                    lambda req: Reply(text="premium")) as (a, b):
        clock = Clock()
        cfg = config([tier("local", a), tier("premium", b)], tmp_path)

        async def go():
            async with bridge_ctx(cfg, clock=clock) as ctx:
                for i in range(MIN_SAMPLES + 2):  # local fails over each time until its breaker opens
                    assert (await ask(ctx, f"s{i}"))[-1]["text"] == "premium"
                assert ctx.router.breakers["local"].state == "open" and ctx.router.predicted_ms(cfg.tiers["premium"])
                local_up["up"] = True
                clock.t += 5  # the breaker's cool-down: the next request probes local
                probe = await ask(ctx, "probe")
                state = ctx.router.breakers["local"].state
                again = await ask(ctx, "again")  # within EXPLORE_S: premium, the one known to answer in time
                clock.t += routing.EXPLORE_S
                later = await ask(ctx, "later")
                return probe, state, again, later
        probe, state, again, later = run(go())
    assert probe[-1]["tier"] == "local" and state == "closed"
    assert again[-1]["tier"] == "premium" and later[-1]["tier"] == "local"
