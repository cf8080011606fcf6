"""Fleet soak: a home install run for a while, then broken on purpose. A provisioned fleet (signed devices), one
mosquitto, two bridges sharing it (shared subscription, one SQLite store), N devices running the real firmware on
the MicroPython unix port, a fake tier speaking the OpenAI and Anthropic wire formats, a routine and a prompt
scheduled every minute on some devices, and asks and commands from the CLI and the REST API at once. Then one
bridge is SIGKILLed, the broker restarted, devices power-cut mid-ask (one just after its minute's job fired) and
one rebooted on request mid-ask. bench/fleet_soak_figures.py reads what happened as a user would notice it.

    python bench/fleet_soak.py [--minutes 11] [--devices 12] [--heap 384K] [--no-faults]"""
import argparse
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_soak_figures import figures  # noqa: E402
from bench.report import write_section  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply  # noqa: E402
from tools import broker as brokers  # noqa: E402
from tools import sim  # noqa: E402
from tools.paths import REPO  # noqa: E402

TEXTS = {"dark": "it is getting dark, light up the porch please",
         "bed": "bedtime: could you switch the porch lamp off for me",
         "warm": "how warm is it in here, roughly?"}
SLOW = "slowly light up the porch please, no hurry"  # the faults' asks: the tier takes 2.5 s, so they are cut mid-ask
ASK_TIMEOUT_S = 60
SAMPLE_S = 30


def responder(req):
    """Answers by the user's words; the next round (tool results) gets a short text."""
    last, ttft = req["messages"][-1], random.uniform(60, 350)
    content = last["content"]
    first = last["role"] == "user" and not (isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content))
    text = content if isinstance(content, str) else " ".join(
        b.get("text", "") for b in content if isinstance(b, dict))
    if not first:
        return Reply(text="Done.", ttft_ms=ttft)
    if "slowly light up" in text:
        return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})], ttft_ms=2500)
    if "light up the porch" in text:
        return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})], ttft_ms=ttft)
    if "porch lamp off" in text:
        return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 0})], ttft_ms=ttft)
    if "heater" in text:
        return Reply(calls=[("gpio_read", {"pin": "heater"})], ttft_ms=ttft)
    return Reply(text="I have no temperature sensor, sorry.", ttft_ms=ttft)


def proc_figures(pid):
    """(RSS KB, open fds) of a live process, or None for one that has just ended."""
    try:
        rss = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        return (int(rss.group(1)), len(os.listdir(f"/proc/{pid}/fd"))) if rss else None
    except OSError:
        return None


class Soak:
    def __init__(self, root, devices, heap):
        self.root, self.fleet, self.heap = root, root / "fleet", heap
        self.devs = ["s%02d" % i for i in range(1, devices + 1)]
        self.port, self.http = brokers.free_port(), {"a": brokers.free_port(), "b": brokers.free_port()}
        self.token = secrets.token_urlsafe(16)
        self.procs, self.held = {}, set()
        self.lock, self.stop, self.pump_stop = threading.Lock(), threading.Event(), threading.Event()
        self.records, self.mqtt, self.samples, self.faults, self.manifests = [], [], [], [], set()

    # ---- the stack ------------------------------------------------------------------------------------------
    def provision(self):
        for dev in self.devs:
            r = subprocess.run([sys.executable, "-m", "tools.cli", "provision", dev, "--fleet", str(self.fleet),
                                "--broker", f"127.0.0.1:{self.port}"], cwd=str(REPO), capture_output=True,
                               text=True, env=self._cli_env())
            if r.returncode:
                raise SystemExit(f"wisp provision {dev}: {r.stderr}")
        # as Debian's mosquitto keeps retained messages over a restart
        (self.fleet / "mosquitto.d" / "soak.conf").write_text(f"persistence true\npersistence_location {self.root}/\n")
        self.secrets = json.loads((self.fleet / "secrets.json").read_text())

    def start_broker(self):
        self.broker = brokers.start_fleet_mosquitto(self.root / "broker", self.fleet / "mosquitto.conf", self.port)
        self.procs["broker"] = self.broker.proc

    def start_bridge(self, name):
        toml = self.root / f"bridge-{name}.toml"
        toml.write_text(f"""[broker]
host = "127.0.0.1"
port = {self.port}
user = "{self.secrets['bridge']['user']}"
password = "{self.secrets['bridge']['password']}"
name = "soak-{name}"
[tiers.premium]
provider = "openai"
base_url = "{self.fake_url}"
model = "fake-fast"
api_key_env = "SOAK_KEY"
price_in = 0.35
price_out = 0.75
[tiers.commodity]
provider = "anthropic"
base_url = "{self.fake_url}"
model = "claude-haiku-4-5"
api_key_env = "SOAK_KEY"
price_in = 1.0
price_out = 5.0
[routes]
interactive = ["premium", "commodity"]
scheduled = ["commodity", "premium"]
[cost]
db = "{self.root}/cost.db"
daily_budget_usd = 0
[http]
port = {self.http[name]}
[signing]
keys = "{self.fleet}/secrets.json"
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WISP_") and not k.endswith("_API_KEY")}
        env.update(WISP_CONFIG=str(toml), SOAK_KEY="sk-soak", WISP_API_TOKEN=self.token, PYTHONUNBUFFERED="1")
        log = open(self.root / f"bridge-{name}.log", "ab")
        self.procs["bridge-" + name] = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=str(REPO), env=env,
                                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def _wait_ready(self, name, timeout_s=20):
        log, deadline = self.root / f"bridge-{name}.log", time.monotonic() + timeout_s
        while "bridge ready" not in log.read_text(errors="replace"):
            if self.procs["bridge-" + name].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bridge {name} did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def start_device(self, dev):
        workdir = self.root / "devices" / dev
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = json.loads((self.fleet / "devices" / dev / "config.json").read_text())
        cfg.update(llm_per_hour=10**5, llm_per_day=10**6)
        (workdir / "config.json").write_text(json.dumps(cfg))
        log = open(self.root / f"dev-{dev}.log", "ab")
        self.procs["dev-" + dev] = sim.start_device(workdir, heapsize=self.heap, stdout=log, stderr=log)

    def _supervise_devices(self):
        """A device that resets (system_reboot) boots again, as `wisp sim` starts it again."""
        while not self.pump_stop.is_set():
            for dev in self.devs:
                p = self.procs.get("dev-" + dev)
                if dev not in self.held and p is not None and p.poll() is not None:
                    self.start_device(dev)
            time.sleep(0.3)

    def start_probe(self):
        """Records every message under wisp/#. A session the broker keeps (persistence on): what is published
        while the probe reconnects after the broker's restart is queued for it, not lost to the figures."""
        import paho.mqtt.client as mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-soak-probe", clean_session=False)
        client.username_pw_set("wisp-admin", self.secrets["admin"]["password"])
        client.on_connect = lambda c, *a: c.subscribe("wisp/#", qos=1)
        client.on_message = lambda c, u, m: self._seen(m.topic, m.payload, m.retain)
        client.connect("127.0.0.1", self.port, keepalive=30)
        client.loop_start()
        return client

    def _seen(self, topic, raw, retained):
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        with self.lock:
            if topic.endswith("/manifest"):
                self.manifests.add(topic.split("/")[1])
            if not retained and not self.pump_stop.is_set():
                self.mqtt.append((time.time(), topic, payload))

    # ---- clients --------------------------------------------------------------------------------------------
    def _cli_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WISP_")}
        env["WISP_RUN_DIR"] = str(self.root / "run")
        return env

    def wisp(self, *args, timeout=ASK_TIMEOUT_S + 30):
        t0 = time.monotonic()
        try:
            r = subprocess.run([sys.executable, "-m", "tools.cli", *args, "--broker", f"127.0.0.1:{self.port}",
                                "--fleet", str(self.fleet)], cwd=str(REPO), capture_output=True, text=True,
                               timeout=timeout, env=self._cli_env())
            out = json.loads(r.stdout) if r.stdout.strip().startswith("{") else None
            return r.returncode, out, r.stderr.strip()[-300:], time.monotonic() - t0
        except subprocess.TimeoutExpired:
            return "hung", None, "", time.monotonic() - t0

    def rest(self, bridge, path, body, timeout_s=ASK_TIMEOUT_S + 30):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http[bridge]}{path}", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return r.status, json.loads(r.read()), "", time.monotonic() - t0
        except urllib.error.HTTPError as e:
            return e.code, None, e.read().decode(errors="replace")[-300:], time.monotonic() - t0
        except OSError as e:
            return type(e).__name__, None, str(e), time.monotonic() - t0

    def live_bridges(self):
        return [b for b in self.http if self.procs["bridge-" + b].poll() is None]

    def record(self, **kw):
        with self.lock:
            self.records.append(dict(kw, t_end=time.time()))

    def _load(self, src, op, seed):
        """One client: asks or commands (a publish with a unique payload: its effect is countable)."""
        rnd = random.Random(seed)
        while not self.stop.is_set():
            dev, kind, mark = rnd.choice(self.devs), rnd.choice(list(TEXTS)), "m" + secrets.token_hex(5)
            topic = f"wisp/{dev}/notes/soak"
            if src == "cli":
                args = ("ask", dev, TEXTS[kind], "--timeout", str(ASK_TIMEOUT_S)) if op == "ask" else \
                    ("cmd", dev, "publish", f"topic={topic}", f"payload={mark}")
                rc, out, err, dt = self.wisp(*args, "--json")
                where = "cli"
            else:
                if not self.live_bridges():
                    time.sleep(1)
                    continue
                where = rnd.choice(self.live_bridges())
                body = {"text": TEXTS[kind], "timeout_s": ASK_TIMEOUT_S} if op == "ask" else \
                    {"tool": "publish", "args": {"topic": topic, "payload": mark}, "timeout_s": 20}
                rc, out, err, dt = self.rest(where, f"/api/devices/{dev}/{op}", body)
                where = "rest-" + where
            self.record(src=where, op=op, dev=dev, kind=kind, mark=mark, rc=rc, reply=out, err=err, dt=dt)
            time.sleep(rnd.uniform(0.5, 2.0))

    def _sample(self):
        n = 0
        while not self.stop.wait(SAMPLE_S):
            n += 1
            s = {"t": time.time(), "bridges": {}, "heap": {}, "running": {}}
            for b in self.live_bridges():
                figures = proc_figures(self.procs["bridge-" + b].pid)
                if figures:
                    s["bridges"][b] = figures
            s["running"] = {d: self.procs["dev-" + d].poll() is None for d in self.devs}
            if n % 2 == 0 and self.live_bridges():
                for dev in self.devs:
                    st, out, err, _ = self.rest(self.live_bridges()[0], f"/api/devices/{dev}/cmd",
                                                {"tool": "system_health", "args": {}, "timeout_s": 10})
                    m = re.search(r"heap (\d+) KB free", str(out))
                    s["heap"][dev] = int(m.group(1)) if m else None
                rc, out, err, _ = self.wisp("devices", "--json", timeout=30)
                s["wisp_devices"] = out
            with self.lock:
                self.samples.append(s)
            print("t=%4.0f s  bridges (RSS KB, fds) %s  requests %d" % (
                s["t"] - self.t_start, s["bridges"], len(self.records)), flush=True)

    # ---- the faults -----------------------------------------------------------------------------------------
    def _ask_in_background(self, dev):
        def run():
            rc, out, err, dt = self.wisp("ask", dev, SLOW, "--json", "--timeout", str(ASK_TIMEOUT_S))
            self.record(src="fault", op="ask", dev=dev, kind="slow", mark=None, rc=rc, reply=out, err=err, dt=dt)
        threading.Thread(target=run, daemon=True).start()

    def _fault(self, what):
        self.faults.append((time.time(), what))
        print(f"fault: {what}", flush=True)

    def break_things(self):
        self.procs["bridge-a"].kill()
        self._fault("bridge a SIGKILLed")
        time.sleep(50)
        self.broker.stop()
        self._fault("broker stopped")
        time.sleep(3)
        self.start_broker()
        self._fault("broker started again")
        time.sleep(50)
        for dev, after_its_job in ((self.devs[4], False), (self.devs[5], True), (self.devs[-1], False)):
            if after_its_job:  # its every-minute job has just fired: the reboot is in the same minute
                time.sleep(60.2 - time.time() % 60)
            self._ask_in_background(dev)
            time.sleep(1.8)  # the CLI is up and the device waits for the tier
            self.held.add(dev)
            self.procs["dev-" + dev].kill()
            self.procs["dev-" + dev].wait()
            self._fault(f"power cut of {dev} mid-ask")
            time.sleep(1)
            self.start_device(dev)
            self.held.discard(dev)
            time.sleep(5)
        self._ask_in_background(self.devs[0])
        time.sleep(1.8)
        rc, out, err, _ = self.wisp("cmd", self.devs[0], "system_reboot", "confirm=reboot", "--json")
        self._fault(f"system_reboot of {self.devs[0]} mid-ask: {(out or {}).get('result') or err}")

    # ---- the run --------------------------------------------------------------------------------------------
    def setup_jobs(self):
        for dev in self.devs[:6]:
            steps = json.dumps([{"tool": "publish", "args": {"topic": f"wisp/{dev}/notes/tick", "payload": "tick"}}])
            self.wisp("cmd", dev, "routine_define", "name=tick", f"steps={steps}")
            self.wisp("cmd", dev, "schedule_add", "spec=* * * * *", "routine=tick", "name=everymin")
        for dev in self.devs[:2]:
            self.wisp("cmd", dev, "schedule_add", "spec=* * * * *", "name=heatercheck",
                      "prompt=have a look at how the heater is doing and tell me")

    def run(self, minutes, faults):
        fake = FakeOpenAI(responder)
        self.fake_url = fake.start_in_thread()
        try:
            self.provision()
            self.start_broker()
            for b in self.http:
                self.start_bridge(b)
            for b in self.http:
                self._wait_ready(b)
            for dev in self.devs:
                self.start_device(dev)
            probe = self.start_probe()
            deadline = time.monotonic() + 30
            while len(self.manifests) < len(self.devs):
                if time.monotonic() > deadline:
                    raise SystemExit(f"devices without a manifest after 30 s: {set(self.devs) - self.manifests}")
                time.sleep(0.2)
            threading.Thread(target=self._supervise_devices, daemon=True).start()
            self.setup_jobs()
            self.t_start = time.time()
            workers = [threading.Thread(target=self._load, args=(src, op, i), daemon=True) for i, (src, op) in
                       enumerate([("cli", "ask"), ("cli", "ask"), ("rest", "ask"), ("rest", "ask"), ("rest", "ask"),
                                  ("cli", "cmd"), ("rest", "cmd")])] + [threading.Thread(target=self._sample,
                                                                                          daemon=True)]
            for w in workers:
                w.start()
            time.sleep(minutes * 60)
            self.t_fault = time.time()
            if faults:
                self.break_things()
                time.sleep(30)
            self.stop.set()
            for w in workers:
                w.join(ASK_TIMEOUT_S + 40)
            time.sleep(3)
            self.pump_stop.set()
            probe.loop_stop()
            probe.disconnect()
            return {"t_start": self.t_start, "t_fault": self.t_fault, "faults": self.faults, "records": self.records,
                    "mqtt": self.mqtt, "samples": self.samples, "fake_calls": len(fake.requests)}
        finally:
            self.pump_stop.set()
            for p in self.procs.values():
                if p.poll() is None:
                    p.terminate()
            fake.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=11, help="steady load before the faults")
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--heap", default="384K", help="each device's -X heapsize (64-bit unix port, .py sources)")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the run's records")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wisp-fleet-soak-"))
    result = Soak(root, args.devices, args.heap).run(args.minutes, not args.no_faults)
    if args.keep:
        (root / "result.json").write_text(json.dumps(result, default=str))
        print(f"logs and records in {root}")
    text = figures(result, root)
    print(text)
    write_section("fleet-soak", f"## Fleet soak\n\n{args.devices} devices, {args.minutes:g} minutes of steady "
                  f"load{'' if args.no_faults else ', then the faults'} (bench/fleet_soak.py).\n\n{text}")


if __name__ == "__main__":
    main()
