"""Two bridge processes on one mosquitto ($share) and one PostgreSQL ([cost] url): a device's daily budget holds
across both, and a re-send that lands on the other bridge while the first one is still answering is not answered
again: one model call, one charge, the device acts once, one reply. The re-send rule is also checked for two
bridges on one host sharing one SQLite file ([cost] db)."""
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from tests.bridge.harness import manifest
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import session_postgres, until
from tools.broker import start_mosquitto

REPO = Path(__file__).resolve().parents[2]
RESEND_S = 0.6  # the device's re-send timeout here (the firmware's is 8 s); the tier stalls well past it


def _sql(url, query, *args):
    async def go():
        db = await asyncpg.connect(url)
        try:
            return await db.fetch(query, *args)
        finally:
            await db.close()
    return asyncio.run(go())


@pytest.fixture
def pg_url():
    """A fresh database on the run's PostgreSQL."""
    server = session_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    _sql(server.url, f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request, tmp_path):
    """Where both bridges keep usage and claims: a fresh PostgreSQL database, or one SQLite file on this host."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else str(tmp_path / "shared.db")


def _rows(store, query):
    """The rows of a query on either store."""
    if store.startswith("postgresql://"):
        return [tuple(r) for r in _sql(store, query)]
    db = sqlite3.connect(store, timeout=5)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


class Device:
    """Like the firmware: processes each (id, seq) once, ignores messages for ids it is done with."""

    def __init__(self, broker, device_id):
        self.id = device_id
        self.lock = threading.Lock()
        self.seqs: dict[str, set] = {}
        self.actions: list[tuple] = []  # tool calls carried out
        self.done: dict[str, dict] = {}  # id -> the done message processed (one per id)
        self.connects = 0
        self.online = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, client_id=f"dev-{device_id}")
        c.on_message = self._message
        c.on_connect = self._connected
        c.on_disconnect = lambda *a: self.online.clear()
        c.reconnect_delay_set(0.2, 1)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.online.wait(5)
        self.client = c

    def _connected(self, client, userdata, flags, reason_code, properties):
        # like the firmware on every (re)connect: subscribe, publish the retained manifest
        client.subscribe(f"wisp/{self.id}/llm/res", 1)
        client.publish(f"wisp/{self.id}/manifest", json.dumps(manifest(self.id)), qos=1, retain=True)
        self.connects += 1
        self.online.set()

    def _message(self, client, userdata, msg):
        m = json.loads(msg.payload)
        with self.lock:
            if m["id"] in self.done or m["seq"] in self.seqs.setdefault(m["id"], set()):
                return
            self.seqs[m["id"]].add(m["seq"])
            self.actions += [(m["id"], c["tool"], json.dumps(c["args"])) for c in m.get("calls") or []]
            if m.get("done"):
                self.done[m["id"]] = m

    def send(self, req_id):
        req = {"v": 1, "id": req_id, "round": 0, "msgs": [{"r": "user", "t": "porch on"}],
               "class": "interactive", "budget_ms": 10000, "hash": "5d41402a"}
        self.client.publish(f"wisp/{self.id}/llm/req", json.dumps(req), qos=1)

    def ask(self, req_id, timeout=15.0):
        """Send, re-send every RESEND_S until a done is processed; returns (done message, re-sends)."""
        resent, deadline = 0, time.monotonic() + timeout
        self.send(req_id)
        last = time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                if req_id in self.done:
                    return self.done[req_id], resent
            if time.monotonic() - last > RESEND_S:
                self.send(req_id)
                last, resent = time.monotonic(), resent + 1
            time.sleep(0.02)
        raise AssertionError(f"no answer to {req_id}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def start_bridge(tmp: Path, name: str, broker, tier_url: str, store: str, budget_usd: float = 0.0):
    """store: a postgresql:// URL ([cost] url) or the path of an SQLite file ([cost] db)."""
    d = tmp / name
    d.mkdir()
    where = f'url = "{store}"' if store.startswith("postgresql://") else f'db = "{store}"'
    (d / "wisp.toml").write_text(
        f'[tiers.local]\nbase_url = "{tier_url}"\nmodel = "m"\nprice_in = 1000.0\nprice_out = 1000.0\n'
        f'[cost]\n{where}\ndaily_budget_usd = {budget_usd}\n')
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_SHARED": "1", "WISP_CONFIG": str(d / "wisp.toml")}
    log_path = d / "bridge.log"
    proc = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=d, env=env, stdout=open(log_path, "wb"),
                            stderr=subprocess.STDOUT)
    until(lambda: "bridge ready" in log_path.read_text() or proc.poll() is not None, 20, "the bridge to start")
    assert proc.poll() is None, log_path.read_text()
    return proc, log_path


@pytest.fixture
def stack(tmp_path):
    """start(responder, budget) -> (device, [bridge logs], fake tier); everything stopped afterwards."""
    made = {"procs": [], "device": None, "fake": None, "broker": None}

    def start(responder, pg_url, budget_usd=0.0):
        made["broker"] = broker = start_mosquitto(tmp_path / "mosq")
        made["fake"] = fake = FakeOpenAI(responder)
        fake.start_in_thread()
        made["procs"] = [start_bridge(tmp_path, n, broker, fake.base_url, pg_url, budget_usd) for n in ("a", "b")]
        made["device"] = device = Device(broker, "shared1")
        for _, log_path in made["procs"]:  # both bridges hold the retained manifest
            until(lambda p=log_path: True, 1)
        time.sleep(0.3)
        return device, [p[1] for p in made["procs"]], fake

    yield start
    if made["device"]:
        made["device"].close()
    for proc, _ in made["procs"]:
        proc.terminate()
        proc.wait(10)
    if made["fake"]:
        made["fake"].stop()
    if made["broker"]:
        made["broker"].stop()


def test_resend_on_the_other_bridge_is_not_answered_twice(stack, store):
    # the tier stalls 2.5 s before its first token: the device re-sends ~4 times, alternately to each bridge
    device, logs, fake = stack(lambda req: Reply(text="The porch light is on.", ttft_ms=2500,
                                                 calls=[("gpio_write", {"pin": "porch_light", "value": 1})]), store)
    done, resent = device.ask("slow1")
    time.sleep(RESEND_S * 2)  # a late duplicate answer, if there were one, would be processed now
    assert "err" not in done and done["text"] == "The porch light is on."
    assert resent >= 2
    assert len(fake.requests) == 1  # one model call
    assert device.actions == [("slow1", "gpio_write", '{"pin": "porch_light", "value": 1}')]  # acts once
    texts = [p.read_text() for p in logs]
    answered = [t for t in texts if "id=slow1 round=0 tier=local calls=1" in t]
    assert len(answered) == 1, texts
    other = texts[1 - texts.index(answered[0])]
    assert "duplicate of a running request: ignored" in other  # the re-send did land on the other bridge
    until(lambda: _rows(store, "SELECT device, req_id FROM usage"), 5, "the usage row")  # SQLite: batched
    assert _rows(store, "SELECT device, req_id FROM usage") == [("shared1", "slow1")]  # one charge

    # a re-send after the answer, wherever it lands, gets the same answer again: no new call, no new action
    device.done.pop("slow1")
    device.seqs.pop("slow1")
    device.actions.clear()
    again, _ = device.ask("slow1")
    assert again["text"] == done["text"] and len(fake.requests) == 1
    device.send("slow1")  # and once more, so both bridges have replayed it
    until(lambda: sum("answer replayed" in p.read_text() for p in logs) == 2, 10, "both bridges to replay")
    time.sleep(1)  # a second usage row, if there were one, would be committed now (SQLite batches 0.5 s)
    assert len(_rows(store, "SELECT 1 FROM usage")) == 1


def test_daily_budget_holds_across_bridges(stack, pg_url):
    # every answer costs far more than the budget: the first one uses it up, on whichever bridge it ran
    device, logs, fake = stack(lambda req: Reply(text="ok"), pg_url, budget_usd=0.001)
    results = [device.ask(f"b{i}")[0] for i in range(6)]  # sequential: alternately on each bridge
    ok = [r for r in results if "err" not in r]
    refused = [r for r in results if "daily budget" in r.get("err", "")]
    assert len(ok) == 1 and len(refused) == 5, results
    assert len(fake.requests) == 1
    assert all("daily budget of $0.00" in p.read_text() for p in logs)  # both bridges refused some
    spent = _sql(pg_url, "SELECT usd FROM spend WHERE device = 'shared1'")[0]["usd"]
    assert spent > 0.001


def test_usage_report_reads_every_bridges_rows(pg_url):
    from bridge.config import CostConfig, Tier
    from bridge.cost import utc_day
    from bridge.pgstore import PgStore

    tier = Tier("local", "http://127.0.0.1:9/v1", "m", price_in=1000.0, price_out=1000.0)

    async def go():
        cfg = CostConfig(url=pg_url, daily_budget_usd=0.5)
        a, b = await PgStore(cfg, "a").start(), await PgStore(cfg, "b").start()
        try:
            a.record("d1", tier, "r1", 100, 100)  # $0.2
            b.record("d1", tier, "r2", 200, 100)  # $0.3: now at the budget
            b.record("d2", tier, "r3", 10, 0)
            await a.aflush()
            await b.aflush()
            refusal = await a.check_budget("d1")  # a sees b's spend
            report = await asyncio.to_thread(a.usage_report, utc_day(), 7)
            return refusal, report
        finally:
            await a.aclose()
            await b.aclose()

    refusal, report = asyncio.run(go())
    assert refusal and "daily budget of $0.50 for device d1 is used up ($0.5000" in refusal
    assert report["by_device"]["d1"]["requests"] == 2 and report["by_device"]["d1"]["budget_usd"] == 0.5
    assert round(report["total_usd"], 6) == 0.51
    assert report["daily"][-1] == {"day": utc_day(), "requests": 3, "cost_usd": report["total_usd"]}
    assert len(report["daily"]) == 7 and all(d["requests"] == 0 for d in report["daily"][:-1])


def test_bridge_without_its_shared_store_says_so_and_exits(tmp_path):
    from tools.broker import free_port
    (tmp_path / "wisp.toml").write_text(f'[cost]\nurl = "postgresql://wisp:hunter2@127.0.0.1:{free_port()}/wisp"\n')
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "WISP_CONFIG": str(tmp_path / "wisp.toml")}
    done = subprocess.run([sys.executable, "-m", "bridge"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "cannot reach the shared store [cost] url (127.0.0.1:" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_requests_are_answered_while_the_shared_store_is_down(stack):
    import tempfile

    from tools.postgres import start_postgres
    pg = start_postgres(tempfile.mkdtemp(prefix="wisp-pg-"))  # its own server: this test stops it
    try:
        device, logs, fake = stack(lambda req: Reply(text="ok"), pg.url)
        assert "err" not in device.ask("up1")[0]
        pg.stop()
        for k in range(4):  # on both bridges: no claim, no usage row, but an answer each
            done, _ = device.ask(f"down{k}", timeout=20)
            assert "err" not in done and done["text"] == "ok"
        assert len(fake.requests) == 5
        texts = [p.read_text() for p in logs]
        assert any("in the shared store failed, answering anyway" in t for t in texts)
        assert all("Traceback" not in t for t in texts)
    finally:
        pg.stop(remove=True)


def test_concurrent_claims_go_together_and_each_gets_its_own_verdict(pg_url):
    """Claims arriving while one is in the database go in one statement: each request still learns whether it
    is its bridge's to answer, another bridge's, or already answered (its answer, to replay)."""
    from bridge.config import CostConfig
    from bridge.pgstore import PgStore
    from bridge.rounds.outcome import Outcome

    async def go():
        cfg = CostConfig(url=pg_url)
        a, b = await PgStore(cfg, "a").start(), await PgStore(cfg, "b").start()
        try:
            keys = [("d1", f"r{k}", 0) for k in range(20)] + [("d2", "nr", None)]
            mine = await asyncio.gather(*(a.claim(k, 30) for k in keys))
            answered = Outcome("d1", "r3", 0, "interactive", "local", 1, None, None, None,
                               [{"v": 1, "id": "r3", "seq": 0, "done": True, "text": "ok"}], 0.01, 0.02)
            a.release(keys[3], answered)
            a.release(keys[4], None)  # failed before acting: the next re-send is answered afresh
            await a.aflush()
            theirs = await asyncio.gather(*(b.claim(k, 30) for k in [*keys, ("d1", "new", 0)]))
            return mine, theirs
        finally:
            await a.aclose()
            await b.aclose()

    mine, theirs = asyncio.run(go())
    assert mine == [True] * 21
    assert theirs[3] == {"sent": [{"v": 1, "id": "r3", "seq": 0, "done": True, "text": "ok"}], "reason": None,
                         "class": "interactive", "tier": "local", "calls": 1, "error": None, "usage": None}
    assert theirs[4] is True and theirs[-1] is True  # released, and new
    assert [t for k, t in enumerate(theirs[:-1]) if k not in (3, 4)] == [None] * 19  # a still answers them


def test_a_database_address_that_never_answers_is_named_with_why(monkeypatch):
    """A firewall that drops the port, or a service there that is not PostgreSQL: the connection times out, and
    the bridge said 'cannot reach the shared store [cost] url (host:port/db): ' with nothing after the colon."""
    import socket

    from bridge import pgstore
    from bridge.config import CostConfig
    from bridge.cost import StoreError
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # takes the TCP connection, never says a word
    monkeypatch.setattr(pgstore, "CONNECT_TIMEOUT_S", 0.5)
    port = silent.getsockname()[1]
    url = f"postgresql://wisp:hunter2@127.0.0.1:{port}/wisp"
    try:
        with pytest.raises(StoreError) as info:
            asyncio.run(pgstore.PgStore(CostConfig(url=url), "test").start())
    finally:
        silent.close()
    assert str(info.value) == (f"cannot reach the shared store [cost] url (127.0.0.1:{port}/wisp): "
                               "no answer within 0.5 s")
