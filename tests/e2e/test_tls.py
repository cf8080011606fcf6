"""TLS to the broker with a pinned CA: the device connects to a broker whose certificate its
CA signed, and refuses one signed by another CA (a man in the middle)."""
import shutil
import time

from tests.support import Probe
from tests.tlsutil import make_ca, tls_listener_conf
from tools import broker as brokers
from tools import sim


def _device(tmp_path, name, port, ca_file):
    workdir = tmp_path / name
    sim.write_config(workdir, name, "127.0.0.1", port, extra={
        "broker": {"host": "127.0.0.1", "port": port, "tls": True, "ca": "ca.pem"}})
    shutil.copy(ca_file, workdir / "ca.pem")
    log = open(workdir / "console.log", "ab")
    proc = sim.start_device(workdir, stdout=log, stderr=log)
    log.close()
    return proc, workdir


def test_device_talks_tls_only_to_the_broker_its_ca_signed(tmp_path):
    good = make_ca(tmp_path / "ca")
    rogue = make_ca(tmp_path / "rogue")
    tls_port = brokers.free_port()
    b = brokers.start_mosquitto(tmp_path / "mq", extra_conf=tls_listener_conf(tls_port, good))
    procs = []
    try:
        probe = Probe(b.host, b.port)  # the plain listener, to watch
        proc, _ = _device(tmp_path, "tls1", tls_port, good["ca"])
        procs.append(proc)
        status = probe.wait_for("wisp/tls1/status", lambda s: isinstance(s, dict) and s.get("state") == "online",
                                timeout=15)
        assert status["state"] == "online"
        probe.publish("wisp/tls1/ask", {"v": 1, "id": "t1", "text": "turn on the porch light"})
        assert probe.wait_for("wisp/tls1/reply", lambda r: r.get("id") == "t1")["ok"]

        proc, workdir = _device(tmp_path, "mitm", tls_port, rogue["ca"])
        procs.append(proc)
        time.sleep(3)
        assert [t for t, _ in probe.drain(0.5) if t.startswith("wisp/mitm/")] == []
        console = (workdir / "console.log").read_text()
        assert "connect to 127.0.0.1:%d failed" % tls_port in console
        probe.close()
    finally:
        for p in procs:
            p.kill()
        b.stop()
