"""Over-the-air updates from the bridge's REST API and on its dashboard: the real bridge process, mosquitto,
and devices running the firmware on the MicroPython unix port (restarted like boards when they reset)."""
import json
import secrets
import time
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.otaboard import Board
from tests.e2e.stack import Stack
from tests.e2e.test_dashboard import _wait, browser  # noqa: F401  (the headless browser fixture)
from tools import broker as brokers

TOKEN = "ota-token-81c2"
ROLLOUT_S = 120


@pytest.fixture
def fleet(tmp_path):
    """dev1 and dev2 with keys the bridge knows; a-bad, whose key the bridge has wrong (its offers are refused)."""
    keys = {d: secrets.token_hex(32) for d in ("a-bad", "dev1", "dev2")}
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({**keys, "a-bad": secrets.token_hex(32)}))
    port = brokers.free_port()
    stack = Stack(with_tier=False, bridge_env={"WISP_API_TOKEN": TOKEN, "WISP_HTTP": f"127.0.0.1:{port}",
                                               "WISP_DEVICE_KEYS": str(keys_file)})
    stack.url = f"http://127.0.0.1:{port}"
    boards = []
    try:
        for dev_id in keys:
            boards.append(Board(stack, dev_id, keys[dev_id]))
        for dev_id in keys:
            stack.probe.wait_for(f"wisp/{dev_id}/status", lambda s: isinstance(s, dict) and s.get("state") == "online",
                                 timeout=20)
        _until(lambda: len(call(stack, "GET", "/api/devices")[1]["devices"]) == 3, "the bridge sees the devices")
        yield stack
    finally:
        for b in boards:
            b.stop()
        stack.close()


def call(stack, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(stack.url + path, method=method, data=data,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _until(cond, what, timeout=ROLLOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def _finished(stack):
    status, body = call(stack, "GET", "/api/ota")
    r = body["rollout"]
    return r if r and r["state"] in ("done", "halted", "failed") else None


def test_one_device_updates_from_the_api_and_the_dashboard_shows_it(fleet, browser):  # noqa: F811
    status, body = call(fleet, "POST", "/api/devices/dev1/ota", {"version": "0.1.1", "health_s": 30})
    assert status == 202 and body["rollout"]["devices"] == {"dev1": {"state": "waiting"}}
    status, busy = call(fleet, "POST", "/api/devices/dev2/ota", {"version": "0.1.1"})
    assert status == 409 and "a rollout is running" in busy["error"]["message"]
    report = _until(lambda: _finished(fleet), "end of the rollout")
    assert report["state"] == "done", report
    assert report["devices"]["dev1"]["state"] == "ok" and report["devices"]["dev1"]["after"] == "0.1.1"
    dev = _until(lambda: (lambda d: d if d["fw"] == "0.1.1" and (d["ota"] or {}).get("state") == "ok" else None)(
        call(fleet, "GET", "/api/devices/dev1/ota")[1]), "dev1 on 0.1.1")
    assert "confirmed healthy" in dev["ota"]["text"] and dev["update"]["state"] == "ok"
    browser.get(f"{fleet.url}/#token={TOKEN}")
    _wait(browser, "dev1's update on the fleet page",
          lambda d: d.find_element(By.CSS_SELECTOR, 'td[data-ota="dev1"]').text == "ok 0.1.1")
    assert browser.find_element(By.CSS_SELECTOR, 'td[data-ota="dev2"]').text == "–"


def test_a_failing_canary_stops_the_fleet_rollout(fleet):
    status, body = call(fleet, "POST", "/api/ota", {"all": True, "canary": 1, "then": "50%", "version": "0.1.1"})
    assert status == 202 and body["rollout"]["stages"] == [["a-bad"], ["dev1", "dev2"]]  # 50 % of 3
    report = _until(lambda: _finished(fleet), "end of the rollout")
    assert report["state"] == "halted"
    assert report["devices"]["a-bad"]["state"] == "failed"
    assert "signed with another key" in report["devices"]["a-bad"]["text"]
    assert report["devices"]["dev1"]["state"] == report["devices"]["dev2"]["state"] == "not offered"
    assert "stopped after stage 1 of 2" in report["halted"]
    for dev_id in ("a-bad", "dev1", "dev2"):
        assert call(fleet, "GET", f"/api/devices/{dev_id}")[1]["fw"] == "0.1.0"


def test_bad_update_requests_say_what_to_fix(fleet):
    assert call(fleet, "POST", "/api/devices/nope/ota", {})[0] == 404
    status, body = call(fleet, "POST", "/api/devices/dev1/ota", {"version": "one"})
    assert status == 400 and "'version'" in body["error"]["message"]
    assert call(fleet, "POST", "/api/devices/dev1/ota", {"health_s": 1})[0] == 400
    assert call(fleet, "POST", "/api/ota", {"devices": []})[0] == 400
    assert call(fleet, "POST", "/api/ota", {"all": True, "then": "0%"})[0] == 400
    assert call(fleet, "GET", "/api/ota")[1] == {"rollout": None}


def test_a_fleet_rollout_posted_again_leaves_out_the_devices_already_updated(fleet):
    # the first rollout stopped after its canary, dev1; posted again, dev1 was offered its own version, refused
    # it, and the whole rollout halted on that "failure" before dev2
    status, _ = call(fleet, "POST", "/api/devices/dev1/ota", {"version": "0.1.1"})
    assert status == 202 and _until(lambda: _finished(fleet), "dev1's update")["state"] == "done"
    _until(lambda: call(fleet, "GET", "/api/devices/dev1")[1]["fw"] == "0.1.1", "dev1 seen on 0.1.1")
    status, body = call(fleet, "POST", "/api/ota", {"devices": ["dev1", "dev2"], "canary": 1, "version": "0.1.1"})
    assert status == 202 and body["rollout"]["stages"] == [["dev2"]], body
    report = _until(lambda: _finished(fleet), "end of the rollout")
    assert report["state"] == "done", report
    assert report["devices"]["dev1"] == {"state": "skipped", "text": "already running 0.1.1"}
    assert report["devices"]["dev2"]["state"] == "ok"
