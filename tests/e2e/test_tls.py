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


def _cas_and_broker(tmp_path):
    """Our CA, a man in the middle's, and mosquitto with a TLS listener our CA signed."""
    good = make_ca(tmp_path / "ca")
    rogue = make_ca(tmp_path / "rogue")
    tls_port = brokers.free_port()
    return good, rogue, tls_port, brokers.start_mosquitto(tmp_path / "mq", extra_conf=tls_listener_conf(tls_port, good))


def test_device_talks_tls_only_to_the_broker_its_ca_signed(tmp_path):
    good, rogue, tls_port, b = _cas_and_broker(tmp_path)
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
        assert proc.poll() is None and "resetting" not in console  # it never connected: no reset
        probe.close()
    finally:
        for p in procs:
            p.kill()
        b.stop()


def _wait_lines(path, text, n, proc=None, timeout=30):
    """Until the console holds `text` n times (or the process exits); the count seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = path.read_text(errors="replace").count(text)
        if seen >= n or (proc is not None and proc.poll() is not None):
            return seen
        time.sleep(0.1)
    return path.read_text(errors="replace").count(text)


def test_tls_reconnects_failing_after_the_link_was_up_reset_the_board_once(tmp_path):
    # mbedTLS reports a handshake that ran out of heap as ENOMEM or as a bad signature; once the
    # pinned CA has verified this broker, a fresh boot (whose heap connected) is the cure. Here
    # the broker comes back with a certificate that CA did not sign: the device resets once, and
    # after that boot (which never connected) it keeps retrying without resetting again.
    good, rogue, tls_port, b = _cas_and_broker(tmp_path)
    procs = []
    try:
        proc, workdir = _device(tmp_path, "tlsr", tls_port, good["ca"])
        procs.append(proc)
        console = workdir / "console.log"
        assert _wait_lines(console, "online as tlsr", 1, proc) == 1  # logged once the connect is complete
        b.stop()
        b = brokers.start_mosquitto(tmp_path / "mq2", port=b.port, extra_conf=tls_listener_conf(tls_port, rogue))
        proc.wait(timeout=30)
        assert proc.returncode == 3, console.read_text()  # the simulator's board reset
        failed = "connect to 127.0.0.1:%d failed" % tls_port
        text = console.read_text()
        assert text.count(failed) >= 3 and text.count("resetting") == 1
        before = text.count(failed)

        # the board boots again: this boot never connected, so a refused certificate is just retried
        log = open(console, "ab")
        proc = sim.start_device(workdir, stdout=log, stderr=log)
        log.close()
        procs.append(proc)
        assert _wait_lines(console, failed, before + 4, proc) >= before + 4
        assert proc.poll() is None
        assert console.read_text().count("resetting") == 1
    finally:
        for p in procs:
            p.kill()
        b.stop()


def test_a_device_on_the_wrong_side_of_tls_is_told_to_check_the_port(tmp_path):
    # mosquitto resets a connection whose first bytes are not what its listener speaks: the
    # console said only "OSError(104,)", for a plain device on the TLS port and the reverse
    good, _rogue, tls_port, b = _cas_and_broker(tmp_path)
    procs = []
    try:
        workdir = tmp_path / "plain"
        sim.write_config(workdir, "plain", "127.0.0.1", tls_port)  # no "tls": plain MQTT
        log = open(workdir / "console.log", "ab")
        procs.append(sim.start_device(workdir, stdout=log, stderr=log))
        log.close()
        proc, tls_dir = _device(tmp_path, "tlsdev", b.port, good["ca"])  # TLS to the plain listener
        procs.append(proc)
        for where, port in ((workdir, tls_port), (tls_dir, b.port)):
            console = where / "console.log"
            failed = "connect to 127.0.0.1:%d failed" % port
            assert _wait_lines(console, failed, 2) >= 2, console.read_text()
            line = next(x for x in console.read_text().splitlines() if failed in x)
            assert ("127.0.0.1:%d refused or reset the connection: no broker there, or TLS there and broker.tls off, "
                    "or the reverse?" % port) in line, line
    finally:
        for p in procs:
            p.kill()
        b.stop()
