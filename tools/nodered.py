"""A real Node-RED run headless on 127.0.0.1 for tools/nodered_check.py: its own user folder and
settings, flows deployed and inject nodes pressed through the admin HTTP API, and what its debug
nodes show read from the editor's websocket (/comms), as the debug sidebar gets it."""
import asyncio
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp

from tools import broker as brokers
from tools import process

START_S = 60.0
SETTINGS = """module.exports = {
    uiHost: "127.0.0.1", uiPort: %d, flowFile: "flows.json", credentialSecret: false,
    telemetry: {enabled: false}, diagnostics: {enabled: false}, editorTheme: {tours: false},
};
"""
LOG_LEVELS = {10: "fatal", 20: "error", 30: "warn"}  # what Node-RED also sends to the debug sidebar


class NodeRed:
    """One Node-RED process with an empty user folder in `workdir`."""

    def __init__(self, binary, workdir):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = brokers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "settings.js").write_text(SETTINGS % self.port)
        self.log_path = self.dir / "node-red.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([binary, "-u", str(self.dir), "-s", str(self.dir / "settings.js")],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.debug = None
        try:
            self._wait_ready()
            self.debug = DebugFeed(f"ws://127.0.0.1:{self.port}/comms")
        except BaseException:
            self.close()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Node-RED exited ({self.proc.returncode}):\n{self.log()}")
            try:
                self.version = json.loads(self._call("GET", "/settings"))["version"]
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"Node-RED did not answer on {self.url} within {START_S} s:\n{self.log()}")

    def _call(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def deploy(self, flow):
        """Replace every flow, as the editor's Deploy (full) does."""
        self._call("POST", "/flows", flow, {"Node-RED-Deployment-Type": "full"})

    def inject(self, node_id):
        """Press an inject node's button."""
        self._call("POST", f"/inject/{node_id}")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def close(self):
        if self.debug:
            self.debug.close()
        process.end(self.proc, 10)


class Shown:
    """One message a debug node showed: its node's name, msg.topic, and the value decoded from
    the sidebar's encoding (format `Object`, `string[3]`, `number`, `boolean`, `buffer[4]`)."""

    def __init__(self, entry):
        self.name, self.topic, self.format = entry.get("name"), entry.get("topic"), entry.get("format", "")
        raw = entry.get("msg")
        if self.format in ("Object", "number"):
            self.value = json.loads(raw)
        elif self.format == "boolean":
            self.value = raw == "true"
        else:  # a string as it is, a buffer in hex
            self.value = raw

    @property
    def type(self):
        """The JavaScript type the next node gets: string, number, boolean, object, buffer."""
        return "object" if self.format == "Object" else self.format.split("[")[0]

    def __repr__(self):
        return f"{self.name}: {self.topic} {self.type} {json.dumps(self.value)}"


class DebugFeed:
    """The editor's websocket, subscribed to `debug`: debug nodes' messages in `shown`, the
    warnings and errors of any node (Node-RED sends those to the sidebar too) in `problems`, and
    the status every node showed under it in the editor (`status/<id>`, which every editor gets)."""

    def __init__(self, url):
        self.shown, self.problems, self._statuses = [], [], []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._read(url),), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"no websocket at {url}")

    async def _read(self, url):
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_json({"subscribe": "debug"})
            self._ready.set()
            reader = asyncio.ensure_future(self._take(ws))
            await self._stop.wait()
            reader.cancel()

    async def _take(self, ws):
        async for frame in ws:
            for item in json.loads(frame.data):
                topic, entry = item.get("topic", ""), item.get("data") or {}
                if topic.startswith("status/"):
                    self._statuses.append((topic[len("status/"):], entry.get("text")))
                if topic != "debug":
                    continue
                if entry.get("level") in LOG_LEVELS:
                    self.problems.append(f"{LOG_LEVELS[entry['level']]} from {entry.get('type')} "
                                         f"{entry.get('name') or entry.get('id')}: {entry.get('msg')}")
                else:
                    self.shown.append(Shown(entry))

    def statuses(self, node_id):
        """The texts node `node_id` showed, oldest first, as message keys
        (`node-red:common.status.connected`)."""
        return [text for shown_by, text in self._statuses if shown_by == node_id]

    def close(self):
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)
