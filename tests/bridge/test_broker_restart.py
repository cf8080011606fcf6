"""One mosquitto restarted under load, two bridges sharing one PostgreSQL: devices and bridges reconnect, every
ask is answered, each with one model call and one action on the device (what a clustered broker's node failure
looks like to one device, without a cluster: none that honours $share installs here, see docs/bridge.md)."""
import threading
import time

from tests.bridge.test_shared_store import Device, pg_url, start_bridge  # noqa: F401 (pg_url: a fixture)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import until
from tools.broker import start_mosquitto

DEVICES = 4
ASKS = 6  # per device, one after the other


def test_broker_restart_under_load_loses_nothing(tmp_path, pg_url):  # noqa: F811
    broker = start_mosquitto(tmp_path / "mosq")
    fake = FakeOpenAI(lambda req: Reply(text="done", ttft_ms=150,
                                        calls=[("gpio_write", {"pin": "porch_light", "value": 1})]))
    fake.start_in_thread()
    procs, devices = [], []
    try:
        procs = [start_bridge(tmp_path, n, broker, fake.base_url, pg_url) for n in ("a", "b")]
        devices = [Device(broker, f"rs{i}") for i in range(DEVICES)]
        time.sleep(0.3)  # the manifests reach both bridges
        errors = []

        def asks(device):
            try:
                for k in range(ASKS):
                    device.ask(f"{device.id}-{k}", timeout=30)
            except AssertionError as e:
                errors.append(e)

        threads = [threading.Thread(target=asks, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        until(lambda: len(fake.requests) >= DEVICES, 10, "the load to start")
        broker.stop()  # mid-load: rounds in flight, requests on the wire
        until(lambda: not any(d.online.is_set() for d in devices), 5, "the devices to notice")
        broker = start_mosquitto(tmp_path / "mosq", port=broker.port)
        for t in threads:
            t.join(60)
        assert not errors, errors
        total = DEVICES * ASKS
        assert all(d.connects >= 2 for d in devices)  # every device did lose its broker
        for d in devices:
            assert sorted(d.done) == sorted(f"{d.id}-{k}" for k in range(ASKS))
            assert all("err" not in m for m in d.done.values()), d.done
            assert len(d.actions) == ASKS  # each ask acted on once
        assert len(fake.requests) == total  # one model call per ask, re-sends included
        for _, log_path in procs:
            assert "Traceback" not in log_path.read_text()
    finally:
        for d in devices:
            d.close()
        for proc, _ in procs:
            proc.terminate()
            proc.wait(10)
        fake.stop()
        broker.stop()
