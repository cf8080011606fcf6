"""A bridge with its HTTP server (REST API, /metrics) run in-process against the test run's real mosquitto, a
priced fake tier over real HTTP, and one simulated device running the real firmware on the MicroPython unix port."""
from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from bridge.config import HttpConfig, Tier
from tests.bridge.harness import BridgeThread, config
from tests.fakes.openai_server import FakeOpenAI, Reply
from tools import sim

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PINS = {"porch_light": {"pin": 5, "mode": "out"}, "door": {"pin": 4, "mode": "in", "pull": "up"}}
READY_TIMEOUT_S = 15.0


def porch_responder(request):
    if request["messages"][-1]["role"] == "user":
        return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})])
    return Reply(text="The porch light is on.")


class ApiStack:
    def __init__(self, broker, dev_id: str, responder=porch_responder):
        self.dir = Path(tempfile.mkdtemp(prefix="wisp-api-"))
        self.dev_id = dev_id
        self.fake = FakeOpenAI(responder)
        self.device = None
        self.bridge = None
        try:
            tier = Tier("local", self.fake.start_in_thread(), "fake-model", price_in=2.0, price_out=10.0)
            cfg = config([tier], self.dir)
            cfg.broker_host, cfg.broker_port = broker.host, broker.port
            cfg.http = HttpConfig(host="127.0.0.1", port=0, token=TOKEN)
            self.bridge = BridgeThread(cfg).start()
            self.base = self.bridge.bridge.http_url[:-len("/v1")]
            workdir = self.dir / "device"
            # fast_path off: every ask goes to the LLM, so asks exercise the bridge's routing
            sim.write_config(workdir, dev_id, broker.host, broker.port, PINS, {"fast_path": False})
            self.console = open(workdir / "console.log", "ab")
            self.device = sim.start_device(workdir, stdout=self.console, stderr=self.console)
            self.wait_online()
        except BaseException:
            self.close()
            raise

    def wait_online(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            status, body = self.call("GET", f"/api/devices/{self.dev_id}")
            if status == 200 and body["online"] and body["manifest"] and body["pins"][0]["state"] is not None:
                return body
            time.sleep(0.1)
        raise TimeoutError(f"device {self.dev_id} not online via the API within {READY_TIMEOUT_S} s")

    def call(self, method: str, path: str, body=None, headers=AUTH, raw: bytes | None = None):
        """(status, decoded JSON or text) of one real HTTP request."""
        return asyncio.run(self._call(method, path, body, headers, raw))

    async def _call(self, method, path, body, headers, raw):
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None and not any(k.lower() == "content-type" for k in headers):
            headers = {**headers, "Content-Type": "application/json"}  # else aiohttp labels bytes octet-stream
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.base + path, data=data, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=60)) as r:
                text = await r.text()
                if r.content_type == "application/json":
                    return r.status, json.loads(text)
                return r.status, text

    def close(self) -> None:
        if self.device and self.device.poll() is None:
            self.device.terminate()
            try:
                self.device.wait(5)
            except subprocess.TimeoutExpired:
                self.device.kill()
        if self.bridge:
            self.bridge.stop()
        self.fake.stop()
        if self.device:
            self.console.close()
