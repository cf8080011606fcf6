"""`wisp logs` against the real broker with a stand-in device: every log line printed once, even where
the ring asked for at the start and the next live batch overlap; the retained status carries no
time (it is not from now); a device the broker never saw is exit 3, as for ask and cmd."""
import io
import json
import secrets
import threading
import time

from tests.support import Probe
from tools import logs
from tools.cli import main as wisp


def test_follow_prints_each_line_once_and_no_time_on_the_retained_status(broker):
    dev_id = "logs" + secrets.token_hex(3)
    now = int(time.time())
    device = Probe(broker.host, broker.port, topics=(f"wisp/{dev_id}/log/get",))
    try:
        device.publish(f"wisp/{dev_id}/status", {"v": 1, "state": "online", "fw": "0.1.0", "boots": 3}, retain=True)

        def answer():
            # the ring, with a `wisp cmd` line written just before; then the live batch (the firmware
            # sends the lines new since its last batch, FEED_MS later), which holds that line again
            device.wait_for(f"wisp/{dev_id}/log/get", timeout=10)
            device.publish(f"wisp/{dev_id}/log", {"v": 1, "ring": True, "lines": [
                [now - 5, "online as x"], [now - 1, "cmd gpio_write(pin=porch_light, value=1)"]]}, qos=0)
            time.sleep(0.3)
            device.publish(f"wisp/{dev_id}/log", {"v": 1, "lines": [
                [now - 1, "cmd gpio_write(pin=porch_light, value=1)"], [now, "cmd gpio_read(pin=door)"]]}, qos=0)
        threading.Thread(target=answer, daemon=True).start()
        out = io.StringIO()
        assert logs.follow(broker.host, broker.port, dev_id, out, follow=True, duration_s=2.0) == 0
        lines = out.getvalue().splitlines()
        assert sum("cmd gpio_write(pin=porch_light, value=1)" in line for line in lines) == 1, lines
        assert sum("cmd gpio_read(pin=door)" in line for line in lines) == 1, lines
        assert lines[0] == "(retained)  status: online (firmware 0.1.0, boot 3)"
    finally:
        device.publish(f"wisp/{dev_id}/status", b"", retain=True)
        device.close()


def test_an_unknown_device_is_exit_3_as_for_ask(broker, capsys):
    assert wisp(["logs", "nosuch" + secrets.token_hex(3), "--broker", f"{broker.host}:{broker.port}"]) == 3
    assert "the broker knows no device" in capsys.readouterr().out


def test_a_live_status_keeps_its_time():
    shown = logs.describe("wisp/d/status", json.dumps({"state": "offline"}).encode())
    assert shown[0][2] == ":" and shown[0].endswith("status: offline")
