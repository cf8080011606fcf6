"""HTTP path side by side with LiteLLM: one zero-delay fake provider (its own process) behind the bridge's `/v1`
and behind a LiteLLM proxy, driven by the same aiohttp client in one run. Added latency = each proxy's latency
minus the fake asked directly (concurrency 1); throughput = requests/s at a few concurrency levels.
LiteLLM lives in its own venv (created on first run, never in .venv): `--litellm-venv`."""
import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench.report import percentile, write_section  # noqa: E402
from tools.broker import free_port, start_mosquitto  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LITELLM_VENV = REPO / ".wisp" / "bench-litellm-venv"
LITELLM_SPEC = "litellm[proxy]"
READY_TIMEOUT_S = 120  # LiteLLM imports a lot before it listens
REQUEST_TIMEOUT_S = 30
TOKEN = "sk-bench-" + secrets.token_hex(16)  # bridge token and LiteLLM master key alike
ANSWER = "The porch light is on now."
FAKE = ("import sys, time; sys.path.insert(0, %r)\nfrom tests.fakes.openai_server import FakeOpenAI, Reply\n"
        "f = FakeOpenAI(lambda r: Reply(text=%r))\n"
        "print(f.start_in_thread(), flush=True)\ntime.sleep(3600)\n")
LITELLM_YAML = """model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake-model
      api_base: {url}
      api_key: dummy
general_settings:
  master_key: {key}
litellm_settings:  # as in LiteLLM's own benchmark config: no callbacks, no retries
  telemetry: false
  set_verbose: false
  callbacks: []
  num_retries: 0
  request_timeout: 30
"""


def ensure_litellm(venv):
    """The litellm CLI of the bench venv, installing it on first use; raises RuntimeError saying why not."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    if not (venv / "bin" / "python").exists():
        # the system python, not .venv's: LiteLLM's pinned dependencies must not touch the project venv
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC], capture_output=True, text=True)
    if r.returncode or not exe.exists():
        raise RuntimeError(f"pip install {LITELLM_SPEC!r} into {venv} failed: {r.stderr.strip()[-800:]}")
    return exe


def wait_http(url, proc, what, timeout_s=READY_TIMEOUT_S):
    host, port = url.split("//")[1].split("/")[0].split(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout_s} s")


async def run_load(url, model, headers, stream, n, concurrency):
    """n chat completions, `concurrency` in flight; (latencies ms, requests/s, failures)."""
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "is the porch light on?"}]}
    lat, failed = [], []
    todo = iter(range(n))
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=conn, headers=headers, timeout=timeout) as s:
        async def worker():
            for _ in todo:
                t0 = time.perf_counter()
                try:
                    async with s.post(url + "/chat/completions", json=body) as r:
                        data = await r.read()
                        ok = r.status == 200 and (b"[DONE]" in data if stream else ANSWER.encode() in data)
                except (TimeoutError, aiohttp.ClientError) as e:
                    ok, data = False, repr(e).encode()
                if ok:
                    lat.append((time.perf_counter() - t0) * 1000)
                else:
                    failed.append(data[:200])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        span = time.perf_counter() - t0
    return lat, len(lat) / span, failed


def start_v1_bridge(tmp, broker, tier_url, procs, tier_extra=""):
    """A `python -m bridge` serving /v1 with one tier at tier_url (tier_extra: more of its TOML keys) and no
    budget, its log in tmp/bridge.log, added to procs; returns its /v1 URL once it answers."""
    port = free_port()
    (tmp / "wisp.toml").write_text(
        f'[tiers.local]\nbase_url = "{tier_url}"\nmodel = "fake-model"\n{tier_extra}\n'
        '[routes]\ninteractive = ["local"]\nscheduled = ["local"]\nprivate = ["local"]\n\n'
        f'[cost]\ndb = "{tmp / "cost.db"}"\ndaily_budget_usd = 0\n')
    env = {**os.environ, "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_CONFIG": str(tmp / "wisp.toml"),
           "WISP_API_TOKEN": TOKEN, "WISP_HTTP": f"127.0.0.1:{port}", "PYTHONPATH": str(REPO)}
    for k in ("WISP_LOCAL_URL", "CEREBRAS_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(k, None)
    log = open(tmp / "bridge.log", "wb")
    bridge = subprocess.Popen([sys.executable, "-m", "bridge", "--log-level", "WARNING"], cwd=tmp, env=env,
                              stdout=log, stderr=log)
    procs.append(bridge)
    url = f"http://127.0.0.1:{port}/v1"
    wait_http(url, bridge, "bridge")
    return url


def measure(targets, modes, levels, n, warmup):
    """{(target, stream, concurrency): (lat, rps, failed)}; targets interleave per cell so drift hits all alike."""
    out = {}
    for stream in modes:
        for c in levels:
            for name, (url, model, headers) in targets.items():
                asyncio.run(run_load(url, model, headers, stream, warmup, c))
                out[name, stream, c] = asyncio.run(run_load(url, model, headers, stream, n, c))
                lat, rps, failed = out[name, stream, c]
                print(f"{name:8} stream={stream!s:5} c={c:3}: p50 {percentile(lat, 50) if lat else 0:7.2f} ms  "
                      f"p99 {percentile(lat, 99) if lat else 0:7.2f} ms  {rps:7.0f} req/s  failed {len(failed)}"
                      + (f"  first failure: {failed[0]!r}" if failed else ""), flush=True)
    return out


def report(res, modes, levels, n, litellm_version, workers, note):
    lines = ["## HTTP path: bridge `/v1` vs LiteLLM proxy",
             "", f"One zero-delay fake OpenAI-compatible provider (its own process, short text answer) behind "
             f"`python -m bridge` (`/v1`, model `interactive` -> one tier) and behind a LiteLLM proxy "
             f"(`litellm --config`, {litellm_version}, {workers} worker(s) as its production guide recommends one "
             f"per pod, no callbacks, no retries, master key, no database; in its own venv). "
             f"Same aiohttp client, same {os.cpu_count()}-core machine, one run; {n} requests per cell after a "
             f"warm-up. Added latency = proxy minus the fake asked directly, concurrency 1. Goal: bridge >= 3x "
             f"LiteLLM's requests/s and <= 1/3 of its added latency.", ""]
    if note:
        lines += [note, ""]
    have_litellm = any(k[0] == "litellm" for k in res)
    lines += ["| mode | path | p50 ms | p99 ms | added p50 ms | added p99 ms |", "|---|---|---|---|---|---|"]
    verdict = []
    for stream in modes:
        mode = "stream" if stream else "non-stream"
        d50, d99 = (percentile(res["direct", stream, 1][0], p) for p in (50, 99))
        added = {}
        for name in ("direct", "bridge", "litellm"):
            if (name, stream, 1) not in res or not res[name, stream, 1][0]:
                continue
            p50, p99 = (percentile(res[name, stream, 1][0], p) for p in (50, 99))
            added[name] = (p50 - d50, p99 - d99)
            a = "" if name == "direct" else f"| {p50 - d50:.2f} | {p99 - d99:.2f} "
            lines.append(f"| {mode} | {name} | {p50:.2f} | {p99:.2f} " + (a or "| | ") + "|")
        if "litellm" in added and "bridge" in added:
            r50 = added["bridge"][0] / added["litellm"][0] if added["litellm"][0] > 0 else float("nan")
            r99 = added["bridge"][1] / added["litellm"][1] if added["litellm"][1] > 0 else float("nan")
            lines.append(f"| {mode} | **bridge / LiteLLM added** | | | **{r50:.2f}** | **{r99:.2f}** |")
            verdict.append(("added latency", mode, r50 <= 1 / 3 and r99 <= 1 / 3))
    lines += ["", "Throughput (requests/s, all requests answered unless noted):", "",
              "| mode | concurrency | direct | bridge | LiteLLM | bridge / LiteLLM |", "|---|---|---|---|---|---|"]
    for stream in modes:
        for c in levels:
            row = []
            for name in ("direct", "bridge", "litellm"):
                if (name, stream, c) in res:
                    lat, rps, failed = res[name, stream, c]
                    row.append(f"{rps:.0f}" + (f" ({len(failed)} failed)" if failed else ""))
                else:
                    row.append("-")
            ratio = "-"
            if have_litellm and res.get(("litellm", stream, c), (0, 0))[1]:
                x = res["bridge", stream, c][1] / res["litellm", stream, c][1]
                ratio = f"**{x:.1f}x**"
                verdict.append(("throughput", f"{'stream' if stream else 'non-stream'} c={c}", x >= 3))
            lines.append(f"| {'stream' if stream else 'non-stream'} | {c} | " + " | ".join(row) + f" | {ratio} |")
    if verdict:
        met = [v for v in verdict if v[2]]
        missed = [f"{k} ({m})" for k, m, ok in verdict if not ok]
        lines += ["", f"Goal met in {len(met)} of {len(verdict)} checks" +
                  (f"; missed: {', '.join(missed)}." if missed else ".")]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000, help="requests per (path, mode, concurrency) cell")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated concurrency levels (1 is needed)")
    ap.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    ap.add_argument("--litellm-workers", type=int, default=1, help="LiteLLM worker processes (its docs: one per pod)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    levels = sorted({1, *(int(x) for x in args.concurrency.split(","))})
    modes = (False, True)
    tmp = Path(tempfile.mkdtemp(prefix="wisp-bench-http-"))
    procs, note, version = [], "", "not run"
    broker = start_mosquitto(tmp / "mosq")  # the bridge also serves devices; give it its broker
    try:
        fake = subprocess.Popen([sys.executable, "-c", FAKE % (str(REPO), ANSWER)], stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        url = fake.stdout.readline().strip()
        bridge_url = start_v1_bridge(tmp, broker, url, procs, "max_concurrency = 4096\n")
        targets = {"direct": (url, "fake-model", {}),
                   "bridge": (bridge_url, "interactive", {"Authorization": f"Bearer {TOKEN}"})}
        try:
            exe = ensure_litellm(args.litellm_venv)
            version = "LiteLLM " + subprocess.run(
                [str(args.litellm_venv / "bin" / "python"), "-c",
                 "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True, text=True, check=True).stdout.strip()
            (tmp / "litellm.yaml").write_text(LITELLM_YAML.format(url=url, key=TOKEN))
            lport = free_port()
            lenv = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                    "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "True"}
            for k in ("DATABASE_URL", "LITELLM_MASTER_KEY", "OPENAI_API_KEY", "PYTHONPATH"):
                lenv.pop(k, None)
            llog = open(tmp / "litellm.log", "wb")
            litellm = subprocess.Popen([str(exe), "--config", str(tmp / "litellm.yaml"), "--host", "127.0.0.1",
                                        "--port", str(lport), "--num_workers", str(args.litellm_workers)],
                                       cwd=tmp, env=lenv,
                                       stdout=llog, stderr=llog, stdin=subprocess.DEVNULL)
            procs.append(litellm)
            lurl = f"http://127.0.0.1:{lport}/v1"
            wait_http(lurl, litellm, "LiteLLM proxy")
            targets["litellm"] = (lurl, "fake", {"Authorization": f"Bearer {TOKEN}"})
        except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
            note = f"**LiteLLM was not measured:** {e}".replace("\n", " ")
            print(note, file=sys.stderr)
        print(f"logs in {tmp}", flush=True)
        res = measure(targets, modes, levels, args.requests, args.warmup)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
    text = report(res, modes, levels, args.requests, version, args.litellm_workers, note)
    print(text)
    if not args.no_write:
        write_section("bridge-vs-litellm", text)
    if not note:  # keep the logs when something did not run
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
