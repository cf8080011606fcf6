"""`wisp run --secure`: the default stack, provisioned in one command. The CLI and the REST API keep
working (with the fleet's login; the bridge signs REST commands), while anonymous clients, unsigned
commands and forged answers are refused."""
import json
import subprocess
import time
import urllib.request

from tests.e2e.wisprun import WispRun
from tools import broker as brokers

ONLINE_TIMEOUT_S = 60.0


def rest(url, token, path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read())


def test_secure_run_keeps_the_tools_and_refuses_strangers(tmp_path):
    port = brokers.free_port()
    run = WispRun(tmp_path / "run", port, args=["--secure"])
    try:
        run.wait_for("wisp is running")
        assert "provisioning 'dev1'" in run.output()
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        while time.monotonic() < deadline:
            ask = run.wisp("ask", "dev1", "turn on the fan")
            if ask.returncode == 0:
                break
            time.sleep(0.5)
        assert ask.returncode == 0 and "fan is on" in ask.stdout, ask.stdout + ask.stderr
        cmd = run.wisp("cmd", "dev1", "gpio_read", "pin=fan")           # signed with the fleet's key
        assert cmd.returncode == 0 and cmd.stdout.strip() == "fan=1", cmd.stdout + cmd.stderr
        token = (tmp_path / "run" / "api_token").read_text().strip()
        res = rest(run.dashboard_url(), token, "/api/devices/dev1/cmd", {"tool": "gpio_write",
                                                                         "args": {"pin": "heater", "value": 1}})
        assert res["ok"] and res["result"] == "ok: heater=1", res       # the bridge signed it
        res = rest(run.dashboard_url(), token, "/api/devices/dev1/pins/porch_light", {"state": "ON"})
        assert res == {"name": "porch_light", "state": "ON"}            # a signed command, not set/
        anon = subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "wisp/dev1/cmd", "-m",
                               '{"v":1,"id":"x","tool":"gpio_write","args":{"pin":"fan","value":0}}'],
                              capture_output=True, text=True, timeout=20)
        assert anon.returncode != 0 and "not authori" in (anon.stderr + anon.stdout).lower()
        unsigned = run.wisp("cmd", "dev1", "gpio_write", "pin=fan", "value=0", "--fleet", str(tmp_path / "none"))
        assert unsigned.returncode != 0                                  # no key: refused (or no login)
    finally:
        run.stop()
    restart = WispRun(tmp_path / "run", port, args=["--secure"])         # the second start reuses the fleet
    try:
        restart.wait_for("wisp is running", times=2)                     # one log for both starts
        assert restart.output().count("provisioning 'dev1'") == 1
        assert restart.wisp("ask", "dev1", "is the fan on?").returncode in (0, 3)   # 3: still booting
    finally:
        restart.stop()
