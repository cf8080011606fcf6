"""Fleet benchmark: many connected virtual devices (one raw MQTT 3.1.1 connection each, speaking the wisp protocol,
no firmware) -> mosquitto -> 1 or 2 `python -m bridge` processes -> zero-delay fake tier (its own process).
A fraction of the devices send llm/req at increasing open-loop rates; added latency = llm/req published -> done
received, minus the fake tier asked directly over HTTP. Reports the highest rate whose added p99 stays < 20 ms.
Bridge CPU time per answered request comes from /proc/<pid>/stat over each rate. `--store postgresql` gives the
bridges one shared PostgreSQL instead of their SQLite files. `--devices 500` checks the bench quickly; the default
is 10,000. `--before COMMIT` (default: the bridge before its CPU work) also runs that commit's bridge, 1 bridge, first
and last, against the same devices, broker and tier at the same rates, for CPU per request before/after measured
in one run.
WISP_BENCH_PROFILE=1 runs each bridge under cProfile (prof<n>.out beside the logs)."""
import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.before import unpack  # noqa: E402
from bench.fleet_devices import DRAIN_S, Fleet  # noqa: E402
from bench.report import percentile, write_section  # noqa: E402
from bench.tier_baseline import direct_latencies  # noqa: E402
from tests.bridge.harness import firmware_manifest, manifest  # noqa: E402
from tools.broker import start_mosquitto  # noqa: E402
from tools.postgres import start_postgres  # noqa: E402
from tools.sim import DEFAULT_PINS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
P99_GOAL_MS = 20.0
FD_SPARE = 512  # descriptors beyond one per device: bridges, fake, logs
BASELINE_REQUESTS = 300
# the last commit before the bridge's CPU work (uvloop, orjson, its own MQTT link): paho-mqtt, asyncio, json
BEFORE = "92818d5"
# The fake keeps no record of the requests: tests read fake.requests, but here a run's ~60,000 of them (tools
# and all) made each full garbage collection of the fake pause it for 50-200 ms, later in the run the longer,
# and those pauses were the p99 spikes of whichever rates they fell into, whatever the bridge did.
FAKE = ("import sys, time; sys.path.insert(0, %r)\nfrom tests.fakes.openai_server import FakeOpenAI, Reply\n"
        "class Forget(list):\n    def append(self, item):\n        pass\n"
        "f = FakeOpenAI(lambda r: Reply(calls=[('gpio_write', {'pin': 'porch_light', 'value': 1})]))\n"
        "f.requests, f.paths = Forget(), Forget()\n"
        "print(f.start_in_thread(), flush=True)\ntime.sleep(36000)\n")


# ---- processes ---------------------------------------------------------------------------------------------------
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid, which=(11, 12)):
    """CPU time a process has used (user + system; which=(11,) user only), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(fields[k]) for k in which) * TICK_S


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # root may raise the hard limit
            return need
        except (ValueError, OSError):
            raise SystemExit(f"need {need} open files (one per device plus {FD_SPARE}); hard limit is {hard}: "
                             f"run with fewer --devices or raise it (ulimit -Hn)") from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_fd_limit(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


def start_bridge(tmp, broker, url, n, store_url=None, tree=REPO):
    store = f'url = "{store_url}"' if store_url else f'db = "{tmp / "cost.db"}"'
    (tmp / "wisp.toml").write_text(
        f'[tiers.local]\nbase_url = "{url}"\nmodel = "fake-model"\nmax_concurrency = 4096\n\n'
        '[routes]\ninteractive = ["local"]\nscheduled = ["local"]\nprivate = ["local"]\n\n'
        f'[cost]\n{store}\ndaily_budget_usd = 0\n')
    env = {**os.environ, "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_CONFIG": str(tmp / "wisp.toml"),
           "PYTHONPATH": str(tree), "WISP_BRIDGE_NAME": f"fleet{n}"}  # one presence topic each
    for k in ("WISP_API_TOKEN", "WISP_LOCAL_URL", "CEREBRAS_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(k, None)
    log = open(tmp / f"bridge{n}.log", "wb")
    prof = ["-m", "cProfile", "-o", str(tmp / f"prof{n}.out")] if os.environ.get("WISP_BENCH_PROFILE") else []
    return subprocess.Popen([sys.executable, *prof, "-m", "bridge", "--log-level", "WARNING"], cwd=tmp, env=env,
                            stdout=log, stderr=log)


async def until_ready(fleet, active, timeout):
    """Every active device gets one answer without err (each bridge has its manifest), or give up."""
    deadline, pending = time.monotonic() + timeout, list(active)
    while pending and time.monotonic() < deadline:
        ids = {fleet.send(d): d for d in pending}
        await fleet.wait(list(ids), DRAIN_S)
        pending = [d for i, d in ids.items() if i not in fleet.done or i in fleet.errors]
        if pending:
            await asyncio.sleep(1)
    return len(pending)


async def bench(args, broker, url, tmp):
    fleet = Fleet(args.devices, args.template)
    t0 = time.monotonic()
    await fleet.connect(broker.host, broker.port)
    connect_s = time.monotonic() - t0
    gc.collect()
    gc.freeze()  # the 10,000 device objects stay: keep the client's own full collections out of the latencies
    pinger = asyncio.create_task(fleet.keepalive())
    step = max(1, int(1 / args.active))
    active = fleet.devices[::step]
    base = await direct_latencies(url, BASELINE_REQUESTS)
    b50, b99 = percentile(base, 50), percentile(base, 99)
    args.base, args.tmp = (b50, b99), tmp
    print(f"{args.devices} devices connected in {connect_s:.1f} s; {len(active)} active; "
          f"fake direct p50 {b50:.2f} ms p99 {b99:.2f} ms", flush=True)
    results = {}  # "before" or a bridge count -> its runs, each a list of rows
    # Before/after in the order before, today, [more bridges], today, before: drift of a shared machine's load
    # over the run weighs on both sides alike, and each side's figure is the mean of its two runs.
    phases = [("before", 1)] * bool(args.before) + [("today", n) for n in args.bridges]
    if args.before and 1 in args.bridges:
        phases += [("today", 1), ("before", 1)]
    try:
        for k, (who, n) in enumerate(phases):
            where = tmp / f"{k}-{who}-{n}"
            where.mkdir()
            tree = unpack(args.before, where) if who == "before" else REPO
            bridges = [start_bridge(where, broker, url, b, None if who == "before" else args.store_url, tree)
                       for b in range(n)]
            try:
                rows = await measure(args, fleet, active, bridges, n if who == "today" else who)
            finally:
                stop(bridges)
            results.setdefault("before" if who == "before" else n, []).append(rows)
    finally:
        pinger.cancel()
        for d in fleet.devices:
            if d.transport:
                d.transport.write(b"\xe0\x00")  # DISCONNECT: no last will, clean end
                d.transport.close()
    return results, connect_s, (b50, b99), len(active), fleet.lost


def stop(bridges):
    for b in bridges:
        b.terminate()
    for b in bridges:
        try:
            b.wait(15)
        except subprocess.TimeoutExpired:
            b.kill()


async def measure(args, fleet, active, bridges, label):
    """The rates against the running bridges: one row each (stops early once saturated)."""
    b50, b99 = args.base
    await asyncio.sleep(2)
    not_ready = await until_ready(fleet, active, 120)
    if not_ready:
        raise SystemExit(f"{not_ready} devices got no answer from {label} bridge(s); logs in {args.tmp}")
    for _ in range(2):  # warm-up at the first rate
        await fleet.run_rate(active, args.rates[0], 1)
    rows = []
    for rate in args.rates:
        cpu0, user0 = sum(cpu_s(b.pid) for b in bridges), sum(cpu_s(b.pid, (11,)) for b in bridges)
        r = await fleet.run_rate(active, rate, args.seconds)
        answered = max(1, int(rate * args.seconds) - r["unanswered"])
        r["cpu_ms"] = (sum(cpu_s(b.pid) for b in bridges) - cpu0) * 1000 / answered
        r["user_ms"] = (sum(cpu_s(b.pid, (11,)) for b in bridges) - user0) * 1000 / answered
        r["p50"] = percentile(r["lat"], 50) - b50 if r["lat"] else float("nan")
        r["p99"] = percentile(r["lat"], 99) - b99 if r["lat"] else float("nan")
        r["holds"] = (r["p99"] < P99_GOAL_MS and not r["unanswered"] and not r["errors"]
                      and r["achieved"] >= 0.95 * rate)
        rows.append(r)
        print(f"{label} bridge(s) {rate:5} req/s: achieved {r['achieved']:6.0f}  added p50 "
              f"{r['p50']:6.2f} ms p99 {r['p99']:7.2f} ms  errors {r['errors']} unanswered "
              f"{r['unanswered']} lost connections {fleet.lost}  bridge CPU {r['cpu_ms']:.2f} ms/req "
              f"(user {r['user_ms']:.2f})" +
              (f"  ({r['sample_err']})" if r["sample_err"] else ""), flush=True)
        if r["achieved"] < 0.9 * rate or r["errors"] > 0.05 * rate * args.seconds:
            break  # saturated: higher rates only queue or refuse more
    return rows


GC_PROBE = """import gc, json, sys, time
one = sys.stdin.read()
held = [json.loads(one) for i in range(%d)]
t0 = time.perf_counter(); gc.collect(); plain = (time.perf_counter() - t0) * 1000
gc.freeze()
t0 = time.perf_counter(); gc.collect(); frozen = (time.perf_counter() - t0) * 1000
print(plain, frozen)
"""


def full_gc_ms(n, template):
    """What one full collection costs a fresh process holding n parsed copies of the manifest, as a bridge
    that does not share tool lists does: (plain, after gc.freeze() as bridge/manifests.py does)."""
    out = subprocess.run([sys.executable, "-c", GC_PROBE % n], input=json.dumps(template), capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def report(args, results, connect_s, base, n_active, lost, broker_fds, gc_ms):
    on = "" if args.store == "sqlite" else ", usage and claims in one shared PostgreSQL"
    # two bridges on one SQLite file claim each request in it (bridge/claims.py); a lone one does not
    shared = "; x2 share one SQLite file and claim each request in it" if args.store == "sqlite" else ""
    published = (f"the firmware's own for `wisp sim`'s default pins, {len(args.template['tools'])} tools"
                 if args.manifest == "firmware" else "the tests' one-tool manifest")
    lines = [(f"## Fleet: 10,000 connected devices, 1 and 2 bridges{on}" if args.devices == 10_000 else
              f"## Fleet: {args.devices} connected devices, 1 and 2 bridges{on}"),
             "", f"{args.devices} virtual devices, each its own MQTT 3.1.1 connection (raw asyncio protocol "
             "clients in one process, subscribed to their `llm/res`, retained manifest published on connect: "
             f"{published}; no firmware running) -> mosquitto (open-files limit {broker_fds}) -> "
             f"`python -m bridge` x1 and x2 (shared subscription{shared}) -> "
             "zero-delay fake tier in its own process (one tool call streamed); everything on "
             f"this {os.cpu_count()}-core machine, one run. All devices connected in {connect_s:.1f} s. "
             f"{n_active} of them ({args.active:.0%}) send requests round-robin, open loop, {args.seconds} s per "
             f"rate. Added latency = llm/req published -> `done` received, minus the fake tier asked directly "
             f"(p50 {base[0]:.2f} ms, p99 {base[1]:.2f} ms). A rate holds when added p99 < {P99_GOAL_MS:.0f} ms, "
             "every request is answered without error and >= 95 % of the offered rate is achieved.", "",
             "| bridges | offered req/s | achieved req/s | added p50 ms | added p99 ms | errors | unanswered | "
             "bridge CPU ms/req | holds |",
             "|---|---|---|---|---|---|---|---|---|"]
    best = {}
    for nb, rows in ((nb, r[0]) for nb, r in results.items() if nb != "before"):  # the first run of each count
        for r in rows:
            lines.append(f"| {nb} | {r['rate']} | {r['achieved']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                         f"{r['errors']} | {r['unanswered']} | {r['cpu_ms']:.2f} | {'yes' if r['holds'] else 'no'} |")
        held = [r["rate"] for r in rows if r["holds"]]
        steady = [r["rate"] for k, r in enumerate(rows) if all(x["holds"] for x in rows[:k + 1])]
        best[nb] = (max(held) if held else None, max(steady) if steady else None)
    lines += ["", "Highest rate holding added p99 < 20 ms: " + "; ".join(
        f"{nb} bridge{'s' if nb > 1 else ''}: " + (f"**{b} req/s**" if b else "none of the rates tried")
        + (f" (every rate held up to {s} req/s)" if s else " (some lower rates did not hold)") * bool(b)
        for nb, (b, s) in best.items()) + f". Device connections lost during the run: {lost}.",
              "", f"Bridge CPU ms/req: user + system CPU time of the bridge processes (/proc/<pid>/stat) over "
              "the rate, divided by the requests answered; it falls as the rate rises because one loop turn then "
              "serves several messages. A full garbage collection of a Python process holding "
              f"{args.devices} parsed manifests took {gc_ms[0]:.0f} ms here, {gc_ms[1]:.1f} ms once they are "
              "frozen (`gc.freeze()`, as bridge/manifests.py does while the cache grows). Requests beyond the "
              "in-flight cap wait in the bridge's FIFO queue (errors column: refusals and tier errors). Where "
              "p50 climbs with p99, the machine is out of CPU: bench client, mosquitto, bridges and fake tier "
              f"share its {os.cpu_count()} cores (with other work on a shared machine)."]
    if "before" in results and 1 in results:
        def cpu(rate, side):  # one figure per run of that side at that rate
            return [r["cpu_ms"] for rows in results[side] for r in rows if r["rate"] == rate]
        lines += ["", f"Bridge CPU per request, before and after, same run: the bridge of commit {args.before} "
                  "(paho-mqtt, asyncio's loop, json) and today's, 1 bridge each on its own SQLite file, against "
                  "the same devices, broker and tier at the same rates, in the order before, today, "
                  "(2 bridges,) today, before; the ratio is of the two runs' means.", "",
                  "| offered req/s | before CPU ms/req | today CPU ms/req | today / before |", "|---|---|---|---|"]
        for rate in args.rates:
            old, now = cpu(rate, "before"), cpu(rate, 1)
            if old and now:
                lines.append(f"| {rate} | {', '.join(f'{x:.2f}' for x in old)} | "
                             f"{', '.join(f'{x:.2f}' for x in now)} | "
                             f"{(sum(now) / len(now)) / (sum(old) / len(old)):.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--active", type=float, default=0.1, help="fraction of devices that send requests")
    ap.add_argument("--rates", default="100,200,300,400,500,600,800,1000", help="offered req/s, increasing")
    ap.add_argument("--seconds", type=float, default=5, help="duration of each rate")
    ap.add_argument("--bridges", default="1,2", help="bridge counts to measure, increasing")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the bridges' cost store: each its SQLite file, or one PostgreSQL they share")
    ap.add_argument("--before", default=BEFORE, metavar="COMMIT",
                    help="also measure this commit's bridge first (1 bridge, SQLite); '' to skip")
    ap.add_argument("--manifest", choices=("firmware", "test"), default="firmware",
                    help="what each device publishes: the firmware's own manifest for `wisp sim`'s default pins "
                         "(22 tools, built on the MicroPython unix port), or the tests' one-tool manifest")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    args.store_url = None
    if args.store != "sqlite":  # the before/after comparison is on SQLite, the before bridge's only store
        args.before = ""
    args.rates = [int(x) for x in args.rates.split(",")]
    args.bridges = sorted(int(x) for x in args.bridges.split(","))
    raise_fd_limit(args.devices + FD_SPARE)  # inherited by mosquitto and the bridges
    tmp = Path(tempfile.mkdtemp(prefix="wisp-bench-fleet-"))
    args.template = firmware_manifest(tmp, DEFAULT_PINS) if args.manifest == "firmware" else manifest("x")
    broker = start_mosquitto(tmp / "mosq", extra_conf="max_connections -1\n")
    fake_log = open(tmp / "fake.log", "wb")  # it logs every stream a hedge loser's cancel cuts short
    fake = subprocess.Popen([sys.executable, "-c", FAKE % str(REPO)], stdout=subprocess.PIPE, stderr=fake_log,
                            text=True)
    pg = None
    try:
        if args.store == "postgresql":
            pg = start_postgres(tmp / "pg")
            args.store_url = pg.url
        url = fake.stdout.readline().strip()
        broker_fds = proc_fd_limit(broker.proc.pid)
        if broker_fds is not None and broker_fds < args.devices + 16:
            raise SystemExit(f"mosquitto may open only {broker_fds} files, fewer than {args.devices} devices")
        print(f"logs in {tmp}", flush=True)
        results, connect_s, base, n_active, lost = asyncio.run(bench(args, broker, url, tmp))
    finally:
        fake.kill()
        fake.wait()
        broker.stop()
        if pg:
            pg.stop(remove=True)
    text = report(args, results, connect_s, base, n_active, lost, broker_fds, full_gc_ms(args.devices, args.template))
    print(text)
    if not args.no_write:
        write_section("fleet" if args.store == "sqlite" else "fleet-postgresql", text)


if __name__ == "__main__":
    main()
