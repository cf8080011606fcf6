"""A bridge stopped (SIGTERM) while HTTP clients wait ends each of them with words that say so, within its
shutdown bound: a client can tell a restart from a network fault. `python -m bridge` as its own process, the
run's real mosquitto, a fake tier that streams slowly over real HTTP, the official `openai` client, a WebSocket
client on /api/events and a REST ask to a device that never answers."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.bridge.harness import manifest
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import Probe, until
from tools.broker import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "shutdown-token-0123456789abcdef"
DEV = "shut1"
STOP_BOUND_S = 8.0  # SHUTDOWN_GRACE_S (5 s, device rounds) plus the HTTP server's own second, and slack


def slow(request):
    if "first" in json.dumps(request["messages"]):  # a first token that never comes in time
        return Reply(text="late", ttft_ms=60_000)
    return Reply(text="word " * 200, chunk_delay_ms=200)  # 40 s of streaming


@pytest.fixture
def bridge(broker, tmp_path):
    fake = FakeOpenAI(slow)
    url = fake.start_in_thread()
    port = free_port()
    (tmp_path / "wisp.toml").write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "WISP_CONFIG": str(tmp_path / "wisp.toml"),
           "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_API_TOKEN": TOKEN, "WISP_HTTP": f"127.0.0.1:{port}",
           "WISP_LOCAL_URL": url, "WISP_LOCAL_MODEL": "fake-model", "WISP_COST_DB": str(tmp_path / "cost.db"),
           "WISP_BRIDGE_NAME": "shutdown-test"}
    log = tmp_path / "bridge.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bridge"], env=env, cwd=tmp_path, stdout=out, stderr=out)
    proc.base, proc.log = f"http://127.0.0.1:{port}", log
    try:
        until(lambda: "bridge ready" in log.read_text() or proc.poll() is not None, 15, "the bridge to start")
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        fake.stop()


def in_thread(fn) -> queue.Queue:
    """Run fn() in a thread; its result (or exception) arrives on the queue."""
    out = queue.Queue()

    def run():
        try:
            out.put(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the test as the outcome
            out.put(e)
    threading.Thread(target=run, daemon=True).start()
    return out


def test_sigterm_ends_streams_waits_and_event_clients_with_a_reason(bridge, broker):
    probe = Probe(broker.host, broker.port)
    try:
        # a device that is online and never answers: a REST ask to it waits
        probe.publish(f"wisp/{DEV}/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        probe.publish(f"wisp/{DEV}/manifest", manifest(DEV), retain=True)
        client = openai.OpenAI(base_url=bridge.base + "/v1", api_key=TOKEN, max_retries=0)
        first_chunk = threading.Event()

        def stream():
            got = []
            for chunk in client.chat.completions.create(model="local", stream=True,
                                                        messages=[{"role": "user", "content": "talk"}]):
                got.append(chunk)
                first_chunk.set()
            return got
        streamed = in_thread(stream)
        waiting_chat = in_thread(lambda: client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "first"}]))

        def ask():
            import urllib.error
            import urllib.request
            until(lambda: _get(bridge.base, f"/api/devices/{DEV}").get("online"), 10, "the device to show online")
            req = urllib.request.Request(bridge.base + f"/api/devices/{DEV}/ask", method="POST",
                                         data=json.dumps({"text": "hi", "timeout_s": 60}).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
        asked = in_thread(ask)
        events = in_thread(lambda: _events(bridge.base))
        assert first_chunk.wait(15), "no streamed chunk"
        probe.wait_for(f"wisp/{DEV}/ask", timeout=10)  # the REST ask went out and waits for its reply
        time.sleep(0.5)  # the WebSocket client has its hello

        t0 = time.monotonic()
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(STOP_BOUND_S + 5) == 0
        took = time.monotonic() - t0

        failed = streamed.get(timeout=5)
        # before: httpx.RemoteProtocolError (an "incomplete chunked read"), as a network fault would give
        assert isinstance(failed, openai.APIError) and not isinstance(failed, openai.APIConnectionError), failed
        assert "shutting down" in str(failed), failed
        waited = waiting_chat.get(timeout=5)
        assert isinstance(waited, openai.InternalServerError) and waited.status_code == 503, waited
        assert "shutting down" in str(waited)
        status, body = asked.get(timeout=5)
        assert status == 503 and "shutting down" in body["error"]["message"], (status, body)
        code, last = events.get(timeout=5)
        # before: close code 1006 (no close frame at all) and no word of why
        assert code == 1001 and last["type"] == "closing" and "shutting down" in last["reason"], (code, last)
        assert took < STOP_BOUND_S, took
        log = bridge.log.read_text()
        assert "Traceback" not in log, log
    finally:
        probe.publish(f"wisp/{DEV}/status", b"", retain=True)
        probe.publish(f"wisp/{DEV}/manifest", b"", retain=True)
        probe.close()


def _get(base: str, path: str) -> dict:
    import urllib.request
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return {}


def _events(base: str) -> tuple[int | None, dict | None]:
    """(close code, last message) of one /api/events client that reads until the bridge closes it."""
    import asyncio

    async def go():
        last = None
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(base + "/api/events", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        last = json.loads(msg.data)
                return ws.close_code, last
    return asyncio.run(go())
