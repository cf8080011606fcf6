"""A whole wisp stack for end-to-end tests: its own mosquitto, the fake LLM tier, the bridge
process and simulated devices running the real firmware on the MicroPython unix port."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import Probe
from tools import broker as brokers
from tools import sim
from tools.paths import REPO

READY_TIMEOUT_S = 15.0
PROVIDER_ENV = ("OPENAI_API_KEY", "CEREBRAS_API_KEY", "WISP_LOCAL_URL", "WISP_CONFIG", "WISP_BROKER")


def porch_responder(request):
    """A tier that turns the porch light on, then says so."""
    last = request["messages"][-1]
    if last["role"] == "user":
        return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})])
    return Reply(text="The porch light is on.")


class Stack:
    def __init__(self, responder=porch_responder, with_tier=True, bridge_env=None, broker_conf="", broker=None,
                 login=None):
        """broker: one started elsewhere (tools/broker_cluster_check.py's ejabberd), left running at close();
        login: (user, password) every part of the stack gives it."""
        self.dir = Path(tempfile.mkdtemp(prefix="wisp-e2e-"))
        self.bridge_env = dict(bridge_env or {})  # e.g. WISP_API_TOKEN and WISP_HTTP for the REST API
        self.broker_conf = broker_conf
        self.login = login
        self.own_broker = broker is None
        if login:
            self.bridge_env.update(WISP_BROKER_USER=login[0], WISP_BROKER_PASSWORD=login[1])
        # e.g. a TLS listener in broker_conf
        self.broker = broker or brokers.start_mosquitto(self.dir / "broker", extra_conf=broker_conf)
        self.fake = FakeOpenAI(responder) if with_tier else None
        self.base_url = self.fake.start_in_thread() if self.fake else None
        self.bridge = None
        self.devices = {}
        self.probe = None
        try:
            self.probe = Probe(self.broker.host, self.broker.port, login=login)
            self.start_bridge()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()  # also when a fixture's setup fails after the broker and bridge started

    @property
    def broker_addr(self):
        return f"{self.broker.host}:{self.broker.port}"

    def start_bridge(self):
        env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
        env.update(WISP_BROKER=self.broker_addr, PYTHONUNBUFFERED="1")
        if self.base_url:
            env.update(WISP_LOCAL_URL=self.base_url, WISP_LOCAL_MODEL="fake-model")
        env.update(self.bridge_env)
        path = self.dir / "bridge.log"
        ready_before = path.read_text().count("bridge ready") if path.exists() else 0  # a restarted bridge
        log = open(path, "ab")
        self.bridge = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=str(self.dir), env=env,
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_log(path, "bridge ready", self.bridge, ready_before + 1)

    def start_device(self, dev_id="dev1", pins=None, heapsize=None, firmware_dir=None, extra=None, romfs=None):
        workdir = self.dir / "devices" / dev_id
        if self.login:
            login = dict(host=self.broker.host, port=self.broker.port, user=self.login[0], password=self.login[1])
            extra = {"broker": login, **(extra or {})}
        sim.write_config(workdir, dev_id, self.broker.host, self.broker.port, pins, extra)
        log = open(workdir / "console.log", "ab")
        proc = sim.start_device(workdir, heapsize=heapsize, stdout=log, stderr=log, firmware_dir=firmware_dir,
                                romfs=romfs)
        log.close()
        self.devices[dev_id] = proc
        self.probe.wait_for(f"wisp/{dev_id}/status", lambda s: isinstance(s, dict) and s.get("state") == "online",
                            timeout=READY_TIMEOUT_S)
        self.probe.wait_for(f"wisp/{dev_id}/manifest", timeout=READY_TIMEOUT_S)
        return proc

    def console(self, dev_id="dev1"):
        return (self.dir / "devices" / dev_id / "console.log").read_text(errors="replace")

    def bridge_log(self):
        return (self.dir / "bridge.log").read_text(errors="replace")

    def wisp(self, *args, timeout=60):
        """Run the real `wisp` CLI against this stack's broker."""
        env = dict(os.environ)
        if self.login:
            env.update(WISP_BROKER_USER=self.login[0], WISP_BROKER_PASSWORD=self.login[1])
        return subprocess.run([sys.executable, "-m", "tools.cli", *args, "--broker", self.broker_addr],
                              cwd=str(REPO), capture_output=True, text=True, timeout=timeout, env=env)

    def restart_broker(self, down_s):
        """Stop the broker, leave it down for `down_s`, start it again on the same port."""
        self.stop_broker()
        time.sleep(down_s)
        self.start_broker()

    def stop_broker(self):
        """The broker goes away (and the probe with it) until start_broker()."""
        self.probe.close()
        self.broker.stop()

    def start_broker(self):
        """The broker again, on its old port, with a new probe. Its persistence is off, so retained
        messages afterwards can only come from clients reconnecting."""
        self.broker = brokers.start_mosquitto(self.dir / "broker", port=self.broker.port, extra_conf=self.broker_conf)
        self.probe = Probe(self.broker.host, self.broker.port)

    def wait_bridge_subscribed(self, times=1):
        """Until the bridge has (re)subscribed `times` times, as its log says."""
        self._wait_log(self.dir / "bridge.log", "subscribed to", self.bridge, times)

    def _wait_log(self, path, marker, proc, times=1):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited ({proc.returncode}):\n{path.read_text()}")
            if path.read_text(errors="replace").count(marker) >= times:
                return
            time.sleep(0.05)
        raise TimeoutError(f"'{marker}' not in {path} within {READY_TIMEOUT_S} s:\n{path.read_text()}")

    def close(self):
        if self.probe:
            self.probe.close()
        for proc in [self.bridge, *self.devices.values()]:
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.fake:
            self.fake.stop()
        if self.own_broker:
            self.broker.stop()
