"""Shared plumbing for bridge tests: fake tiers over real HTTP, configs, a bridge context driven in-process, and a
whole bridge in a background thread."""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading

from bridge.app import MAX_IN_FLIGHT, Bridge
from bridge.config import BridgeConfig, CostConfig, RoutingConfig, Tier
from bridge.cost import CostStore
from bridge.httpclient import HttpClient
from bridge.manifests import ManifestCache
from bridge.providers import provider_factory
from bridge.rounds.dedupe import Dedupe
from bridge.rounds.handler import HandlerContext, handle_llm_request
from bridge.routing.router import Router
from tests.fakes.openai_server import FakeOpenAI
from tools.paths import micropypath, micropython_cmd

TOOLS = [{"name": "gpio_write", "desc": "Set a named output pin",
          "params": {"type": "object",
                     "properties": {"pin": {"type": "string", "enum": ["porch_light"]},
                                    "value": {"type": "integer", "enum": [0, 1]}},
                     "required": ["pin", "value"]}}]
PORCH_ON = ("gpio_write", {"pin": "porch_light", "value": 1})


def manifest(device_id: str) -> dict:
    return {"v": 1, "id": device_id, "fw": "0.1.0", "hash": "5d41402a", "tools": TOOLS,
            "pins": {"porch_light": {"mode": "out"}}, "limits": {"rounds": 4, "calls": 4}}


_SCRIPT = ("from wisp import app\nfrom wisp.tools import manifest\ndev, _ = app.build('config.json')\n"
           "print('MANIFEST ' + ''.join(manifest.pieces(dev, 'x')))\n")


def firmware_manifest(tmp_path, pins, **config) -> dict:
    """The manifest real firmware (MicroPython unix port) publishes for a device with these pins and config."""
    (tmp_path / "config.json").write_text(json.dumps({"id": "conf1", "broker": {"host": "127.0.0.1", "port": 1},
                                                      "pins": pins, **config}))
    done = subprocess.run([micropython_cmd(), "-c", _SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, env={"MICROPYPATH": micropypath()})
    line = next((x for x in done.stdout.splitlines() if x.startswith("MANIFEST ")), None)
    if line is None:
        raise RuntimeError(f"the firmware printed no manifest: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(line[len("MANIFEST "):])


def llm_req(req_id: str, **extra) -> bytes:
    return json.dumps({"v": 1, "id": req_id, "round": 0, "msgs": [{"r": "user", "t": "turn on the porch light"}],
                       "class": "interactive", "budget_ms": 5000, "hash": "5d41402a", **extra}).encode()


@contextlib.contextmanager
def fake_tiers(*responders, **kw):
    servers = [FakeOpenAI(r, **kw) for r in responders]
    try:
        for s in servers:
            s.start_in_thread()
        yield servers
    finally:
        for s in servers:
            s.stop()


def config(tiers: list[Tier], tmp_path, routes=None, **cost) -> BridgeConfig:
    names = [t.name for t in tiers]
    return BridgeConfig(tiers={t.name: t for t in tiers},
                        routes=routes or {"interactive": names, "scheduled": names, "private": ["local"]},
                        cost=CostConfig(db=str(tmp_path / "cost.db"), **cost), routing=RoutingConfig())


class Recorder:
    """Stands in for MqttLink.publish: collects llm/res messages per request id."""

    def __init__(self):
        self.messages: list[dict] = []

    def __call__(self, topic: str, msg: dict) -> None:
        self.messages.append(msg)

    def of(self, req_id: str) -> list[dict]:
        return [m for m in self.messages if m["id"] == req_id]


@contextlib.asynccontextmanager
async def bridge_ctx(cfg: BridgeConfig, device_id: str = "dev1", clock=None):
    costs = CostStore(cfg.cost)
    try:
        async with HttpClient() as http:
            manifests = ManifestCache()
            manifests.update(device_id, json.dumps(manifest(device_id)).encode())
            router = Router(cfg, provider_factory(http), clock=clock)
            yield HandlerContext(cfg, manifests, Recorder(), router, costs, Dedupe())
    finally:
        costs.close()


async def ask(ctx: HandlerContext, req_id: str, device_id: str = "dev1", **extra) -> list[dict]:
    await handle_llm_request(device_id, llm_req(req_id, **extra), ctx)
    return ctx.publish.of(req_id)


def run(coro):
    return asyncio.run(coro)


class BridgeThread:
    """A bridge on its own event loop in a background thread, driven by a test over the real broker."""

    def __init__(self, config: BridgeConfig, max_in_flight: int = MAX_IN_FLIGHT):
        self.bridge = Bridge(config, max_in_flight)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wisp-bridge", daemon=True)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self.bridge.run(self._stop, on_ready=self._ready.set))
        finally:
            self._loop.close()

    def start(self, timeout_s: float = 10.0) -> BridgeThread:
        """Returns once subscribed, so requests published afterwards are not missed."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"bridge did not subscribe within {timeout_s} s")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout_s)
