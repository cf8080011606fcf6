"""Budget overshoot with two bridges racing on one device: two `python -m bridge` processes on one mosquitto
($share) and one PostgreSQL ([cost] url), a fake tier that answers after TIER_MS, and one device that keeps K
requests in flight at a time until every one is refused as over budget. Overshoot = what was spent beyond the
daily budget, in rounds; the documented bound is K (the requests in flight when the budget was reached)."""
import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from bench.report import write_section  # noqa: E402
from tests.bridge.test_shared_store import Device, start_bridge  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply  # noqa: E402
from tools.broker import start_mosquitto  # noqa: E402
from tools.postgres import start_postgres  # noqa: E402

TIER_MS = 50  # each round takes this long at the tier: requests overlap
BUDGET_USD = 1.0  # the daily budget; what a round costs is measured (the "budget in rounds" column)


def spent(url, device):
    async def go():
        db = await asyncpg.connect(url)
        try:
            return await db.fetchval("SELECT usd FROM spend WHERE device = $1", device) or 0.0
        finally:
            await db.close()
    return asyncio.run(go())


def race(tmp, in_flight):
    pg = start_postgres(tmp / "pg")
    broker = start_mosquitto(tmp / "mosq")
    fake = FakeOpenAI(lambda req: Reply(text="ok", ttft_ms=TIER_MS))
    fake.start_in_thread()
    procs, device = [], None
    try:
        # about a dime a round at these prices (a hundred-odd tokens at 1000 USD per million): a budget of rounds
        procs = [start_bridge(tmp, n, broker, fake.base_url, pg.url, budget_usd=BUDGET_USD)
                 for n in ("a", "b")]
        device = Device(broker, "racer")
        time.sleep(0.3)
        answered, refused, seq = 0, 0, 0
        while refused == 0:
            ids = [f"q{seq + k}" for k in range(in_flight)]
            seq += in_flight
            for i in ids:
                device.send(i)
            deadline = time.monotonic() + 10
            while any(i not in device.done for i in ids) and time.monotonic() < deadline:
                time.sleep(0.005)
            for i in ids:
                m = device.done.get(i)
                if m and "err" not in m:
                    answered += 1
                elif m and "daily budget" in m["err"]:
                    refused += 1
        usd = spent(pg.url, device.id)
        per_round = usd / answered
        return {"in_flight": in_flight, "answered": answered, "budget_rounds": BUDGET_USD / per_round,
                "overshoot_rounds": max(0.0, (usd - BUDGET_USD) / per_round), "tier_calls": len(fake.requests)}
    finally:
        if device:
            device.close()
        for proc, _ in procs:
            proc.terminate()
            proc.wait(10)
        fake.stop()
        broker.stop()
        pg.stop(remove=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--in-flight", default="1,4,16", help="requests the device keeps in flight, per run")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for k in (int(x) for x in args.in_flight.split(",")):
        r = race(Path(tempfile.mkdtemp(prefix="wisp-bench-store-")), k)
        print(r, flush=True)
        rows.append(r)
    lines = ["## Budget across bridges: overshoot with two bridges racing on one device", "",
             "Two bridges sharing one PostgreSQL (`[cost] url`) and one mosquitto (`$share`), a fake tier that "
             f"answers after {TIER_MS} ms, one device with a daily budget of {BUDGET_USD:.2f} USD that keeps K "
             "requests in flight (spread over both bridges) until it is refused. Budget in rounds: the budget "
             "over what one answered round cost, as measured. One run per K on this machine.", "",
             "| K in flight | rounds answered | budget in rounds | overshoot in rounds | bound (K) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['in_flight']} | {r['answered']} | {r['budget_rounds']:.1f} | "
                     f"{r['overshoot_rounds']:.1f} | {r['in_flight']} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("shared-store", text)


if __name__ == "__main__":
    main()
