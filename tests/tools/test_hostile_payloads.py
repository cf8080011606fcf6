"""The CLI reads what any client may publish on the topics it listens to. JSON nested deeper than Python's
json reads (a RecursionError, not a ValueError) on a retained status, a manifest, a bridge's presence or a
reply is skipped like any other unreadable message: `wisp devices`, `logs` and `ask` go on and show the
rest."""
import json
import secrets
import threading

from tests.support import Probe
from tools.cli import main as wisp

DEEP = b"[" * 100_000
DEEP_OBJECT = b'{"state":' * 50_000


def test_devices_and_logs_skip_junk_and_show_the_rest(own_broker, capsys):
    at = f"{own_broker.host}:{own_broker.port}"
    probe = Probe(own_broker.host, own_broker.port)
    try:
        probe.publish("wisp/good/status", {"v": 1, "state": "online", "fw": "0.1.0", "board": "sim"}, retain=True)
        probe.publish("wisp/junk/status", DEEP, retain=True)
        probe.publish("wisp/junk/manifest", DEEP_OBJECT, retain=True)
        probe.publish("wisp/bridge/odd/status", DEEP, retain=True)
        probe.publish("wisp/bridge/vm/status", {"v": 1, "state": "online", "tiers": ["local"]}, retain=True)

        assert wisp(["devices", "--json", "--broker", at]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["devices"]["good"]["state"] == "online" and listed["devices"]["good"]["board"] == "sim"
        assert listed["devices"]["junk"]["state"] == "?"
        assert listed["bridges"]["vm"]["tiers"] == ["local"]

        wisp(["logs", "junk", "--broker", at])
        assert "status: (not JSON)" in capsys.readouterr().out
    finally:
        probe.close()


def test_ask_skips_an_unreadable_reply_and_prints_the_real_one(own_broker, capsys):
    dev_id = "dev" + secrets.token_hex(3)
    device = Probe(own_broker.host, own_broker.port, topics=(f"wisp/{dev_id}/ask",))
    try:
        device.publish(f"wisp/{dev_id}/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)

        def answer():
            req = device.wait_for(f"wisp/{dev_id}/ask", timeout=10)
            device.publish(f"wisp/{dev_id}/reply", DEEP)
            device.publish(f"wisp/{dev_id}/reply", {"v": 1, "id": req["id"], "ok": True, "text": "porch light is on",
                                                    "path": "fast", "ms": 3})
        threading.Thread(target=answer, daemon=True).start()
        assert wisp(["ask", dev_id, "turn on the porch light", "--timeout", "10",
                     "--broker", f"{own_broker.host}:{own_broker.port}"]) == 0
        assert "porch light is on" in capsys.readouterr().out
    finally:
        device.close()
