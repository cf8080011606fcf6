"""`wisp provision` against the real mosquitto: each device is fenced into wisp/<its id>/#."""
import json
import os
import queue
import stat
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from tools import broker as brokers
from tools import provision as prov
from tools.cli import main as wisp
from tools.paths import REPO
from tools.system_deps import find_mosquitto

QUIET_S = 0.5  # how long "nothing arrives" is watched; deliveries on loopback take ~1 ms


class Client:
    """A logged-in paho client that records what arrives."""

    def __init__(self, port, user, password):
        self.inbox = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-" + user + str(time.monotonic_ns()))
        self.c.username_pw_set(user, password)
        self.c.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload))
        connected = threading.Event()
        self.rc = None

        def on_connect(c, u, flags, rc, props=None):
            self.rc = rc
            connected.set()
        self.c.on_connect = on_connect
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not connected.wait(5):
            raise TimeoutError("no CONNACK")

    def subscribe(self, topic):
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, 1)
        if not done.wait(5):
            raise TimeoutError("no SUBACK")

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def got(self, timeout):
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def fleet(tmp_path):
    d = tmp_path / "fleet"
    port = brokers.free_port()
    for dev in ("deva", "devb"):
        assert wisp(["provision", dev, "--fleet", str(d), "--broker", f"127.0.0.1:{port}"]) == 0
    return d


@pytest.fixture
def secure_broker(fleet, tmp_path):
    # the generated file itself, read through include_dir as Debian's system mosquitto does
    b = brokers.start_fleet_mosquitto(tmp_path / "mosq", fleet / "mosquitto.conf", prov.broker_address(fleet)[1])
    yield b
    b.stop()


def login(fleet, who, port):
    store = json.loads((fleet / "secrets.json").read_text())
    password = store["bridge"]["password"] if who == prov.BRIDGE_USER else store["devices"][who]["password"]
    return Client(port, who, password)


def test_device_cannot_read_or_command_another_device(fleet, secure_broker):
    port = secure_broker.port
    a, b, bridge = (login(fleet, who, port) for who in ("deva", "devb", prov.BRIDGE_USER))
    try:
        assert (a.rc, b.rc, bridge.rc) == (0, 0, 0)
        a.subscribe("wisp/devb/#")           # denied, yet SUBACK says granted: only silence tells
        a.subscribe("wisp/deva/#")
        bridge.subscribe("wisp/#")
        bridge.publish("wisp/devb/ask", b'{"v":1,"id":"x","text":"secret"}')
        bridge.publish("wisp/deva/ask", b'{"v":1,"id":"y","text":"mine"}')
        assert a.got(5) == ("wisp/deva/ask", b'{"v":1,"id":"y","text":"mine"}')
        assert a.got(QUIET_S) is None        # devb's ask never reached deva
        b.subscribe("wisp/devb/#")
        a.publish("wisp/devb/ask", b"command from deva")     # denied publish: dropped silently
        a.publish("wisp/deva/reply", b"ok")
        seen = [bridge.got(5)]
        while (m := bridge.got(QUIET_S)) is not None:
            seen.append(m)
        assert ("wisp/deva/reply", b"ok") in seen
        assert all(t != "wisp/devb/ask" or p != b"command from deva" for t, p in seen)
        assert b.got(QUIET_S) is None
    finally:
        for c in (a, b, bridge):
            c.close()


def test_device_may_announce_to_home_assistant_and_bridge_sees_every_device(fleet, secure_broker):
    port = secure_broker.port
    a, bridge = login(fleet, "deva", port), login(fleet, prov.BRIDGE_USER, port)
    watcher = login(fleet, "devb", port)
    try:
        bridge.subscribe("$share/wisp/wisp/+/llm/req")   # how bridges split the load
        a.publish("wisp/deva/llm/req", b"req")
        assert bridge.got(5) == ("wisp/deva/llm/req", b"req")
        watcher.subscribe("homeassistant/#")            # devices may write discovery, not read it
        a.publish("homeassistant/switch/wisp_deva/porch_light/config", b"{}")
        assert watcher.got(QUIET_S) is None
    finally:
        for c in (a, bridge, watcher):
            c.close()


def test_a_device_writes_only_its_own_discovery_topics(fleet, secure_broker):
    port = secure_broker.port
    store = json.loads((fleet / "secrets.json").read_text())
    ha = Client(port, prov.ADMIN_USER, store["admin"]["password"])    # Home Assistant's login
    a, b = login(fleet, "deva", port), login(fleet, "devb", port)
    try:
        ha.subscribe("homeassistant/#")
        b.subscribe("homeassistant/status")              # devices hear HA come back online
        a.publish("homeassistant/switch/wisp_deva/fan/config", b'{"own": 1}')
        assert ha.got(5) == ("homeassistant/switch/wisp_deva/fan/config", b'{"own": 1}')
        a.publish("homeassistant/switch/wisp_devb/fan/config", b'{"hijack": 1}')   # refused by the ACL
        a.publish("homeassistant/switch/wisp_devb/heater/config", b"")              # a deletion, too
        assert ha.got(QUIET_S) is None
        ha.publish("homeassistant/status", b"online")
        assert b.got(5) == ("homeassistant/status", b"online")
    finally:
        for c in (ha, a, b):
            c.close()


def test_wrong_password_and_anonymous_are_refused(fleet, secure_broker):
    bad = Client(secure_broker.port, "deva", "not-the-password")
    anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        assert bad.rc != 0
        rcs = []
        anon.on_connect = lambda c, u, f, rc, p=None: rcs.append(rc)
        anon.connect("127.0.0.1", secure_broker.port)
        anon.loop_start()
        deadline = time.monotonic() + 5
        while not rcs and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rcs and rcs[0] != 0
    finally:
        bad.close()
        anon.loop_stop()


def test_idempotent_private_files_and_no_secret_on_screen(tmp_path, capsys):
    fleet = tmp_path / "fleet"
    os.environ["WISP_WIFI_PASSWORD"] = "hunter22-wifi"
    try:
        args = ["provision", "dev1", "--fleet", str(fleet), "--broker", "10.0.0.2:1883", "--ssid", "home",
                "--pins", str(write_pins(tmp_path))]
        assert wisp(args) == 0
        first = json.loads((fleet / "devices/dev1/config.json").read_text())
        acl_first = (fleet / "acl").read_text()
        assert wisp(args) == 0
        again = json.loads((fleet / "devices/dev1/config.json").read_text())
    finally:
        del os.environ["WISP_WIFI_PASSWORD"]
    out = capsys.readouterr()
    assert first == again                                   # same credentials, same config
    assert (fleet / "acl").read_text() == acl_first
    assert first["wifi"] == {"ssid": "home", "password": "hunter22-wifi"}
    assert first["broker"] == {"host": "10.0.0.2", "port": 1883, "user": "dev1",
                               "password": first["broker"]["password"]}
    assert len(first["key"]) == 2 * prov.DEVICE_KEY_BYTES
    assert first["pins"] == {"lamp": {"pin": 2, "mode": "out"}}
    store = json.loads((fleet / "secrets.json").read_text())
    for secret in (first["broker"]["password"], first["key"], store["bridge"]["password"], "hunter22-wifi"):
        assert secret not in out.out + out.err
        assert secret not in (fleet / "passwd").read_text()   # hashed, not plain
    for private in ("secrets.json", "passwd", "bridge.toml", "devices/dev1/config.json"):
        assert stat.S_IMODE((fleet / private).stat().st_mode) == 0o600, private
    assert "dev1" in out.out


def test_the_broker_files_are_replaced_whole_never_rewritten_in_place(tmp_path):
    # `wisp run --fleet` reloads mosquitto when they change, and a Ctrl-C may come at any time:
    # a broker reading an acl half-written would shut devices out of their own topics
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "dev1", "--fleet", str(fleet)]) == 0
    held = {name: open(fleet / name) for name in ("acl", "mosquitto.conf")}
    try:
        assert wisp(["provision", "dev2", "--fleet", str(fleet)]) == 0
        before = {name: f.read() for name, f in held.items()}   # what a reader that opened them earlier sees
    finally:
        for f in held.values():
            f.close()
    assert "user dev1" in before["acl"] and "user dev2" not in before["acl"]
    assert "user dev2" in (fleet / "acl").read_text()
    assert before["mosquitto.conf"].startswith("# Written by `wisp provision`")
    for name in ("acl", "mosquitto.conf"):
        assert stat.S_IMODE((fleet / name).stat().st_mode) == 0o644, name   # the broker's user reads them
    assert not [p.name for p in fleet.iterdir() if p.name.startswith(".")]   # no temporary file left


def test_rotate_changes_credentials_and_bad_ids_are_refused(tmp_path, capsys):
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "dev1", "--fleet", str(fleet)]) == 0
    before = json.loads((fleet / "devices/dev1/config.json").read_text())
    assert wisp(["provision", "dev1", "--fleet", str(fleet), "--rotate"]) == 0
    after = json.loads((fleet / "devices/dev1/config.json").read_text())
    assert before["broker"]["password"] != after["broker"]["password"] and before["key"] != after["key"]
    assert wisp(["provision", "Dev 1", "--fleet", str(fleet)]) == 2
    assert wisp(["provision", prov.BRIDGE_USER, "--fleet", str(fleet)]) == 2
    assert "a-z 0-9" in capsys.readouterr().err


def test_a_long_id_is_provisioned_with_a_warning_about_strict_brokers(tmp_path, capsys):
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "kitchen-ceiling-light-1", "--fleet", str(fleet)]) == 0
    err = capsys.readouterr().err
    assert ("warning: id 'kitchen-ceiling-light-1' makes the MQTT client id 'wisp-kitchen-ceiling-light-1', "
            "28 characters: a broker held to MQTT 3.1.1's 23 may refuse it") in err
    assert json.loads((fleet / "devices/kitchen-ceiling-light-1/config.json").read_text())["id"] == \
        "kitchen-ceiling-light-1"


def write_pins(tmp_path):
    p = tmp_path / "pins.json"
    p.write_text(json.dumps({"lamp": {"pin": 2, "mode": "out"}}))
    return p


def test_running_it_again_keeps_what_the_user_added(tmp_path):
    fleet = tmp_path / "fleet"
    args = ["provision", "porch", "--fleet", str(fleet), "--broker", "192.168.1.20:1883"]
    assert wisp(args) == 0
    cfg_path = fleet / "devices" / "porch" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(ntp="192.168.1.1", fast_path=False)
    cfg["broker"]["keepalive"] = 30
    cfg_path.write_text(json.dumps(cfg))
    user_conf = fleet / "mosquitto.d" / "tls.conf"
    user_conf.write_text("# mine\n")
    assert wisp(args) == 0
    again = json.loads(cfg_path.read_text())
    assert again == cfg                                    # nothing of the user's was dropped
    assert user_conf.read_text() == "# mine\n"
    assert f"include_dir {(fleet / 'mosquitto.d').resolve()}" in (fleet / "mosquitto.conf").read_text()
    assert wisp(args + ["--ntp", "10.0.0.1,pool.ntp.org"]) == 0
    assert json.loads(cfg_path.read_text())["ntp"] == ["10.0.0.1", "pool.ntp.org"]
    assert wisp(args + ["--ntp", "10.0.0.1"]) == 0
    assert json.loads(cfg_path.read_text())["ntp"] == "10.0.0.1"


def test_the_user_s_broker_settings_are_read_by_mosquitto_and_by_wisp_run_fleet(tmp_path):
    fleet = tmp_path / "fleet"
    port, extra = brokers.free_port(), brokers.free_port()
    assert wisp(["provision", "deva", "--fleet", str(fleet), "--broker", f"127.0.0.1:{port}"]) == 0
    (fleet / "mosquitto.d" / "second.conf").write_text(f"listener {extra} 127.0.0.1\n")
    store = json.loads((fleet / "secrets.json").read_text())
    # `wisp run --fleet`, which reads mosquitto.conf through include_dir as Debian's mosquitto does
    b = brokers.start_fleet_mosquitto(tmp_path / "mosq", fleet / "mosquitto.conf", port)
    try:
        c = Client(extra, "deva", store["devices"]["deva"]["password"])   # logins and ACL apply there too
        assert c.rc == 0
        c.close()
    finally:
        b.stop()
    # `mosquitto -c mosquitto.conf`: the file as it is, on loopback (and as root, kept root: mosquitto
    # would drop to the `mosquitto` user, who cannot read the test's files)
    conf = tmp_path / "main.conf"
    text = (fleet / "mosquitto.conf").read_text().replace(f"listener {port}\n", f"listener {port} 127.0.0.1\n")
    conf.write_text(("user root\n" if os.geteuid() == 0 else "") + text)
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        brokers.wait_listening("127.0.0.1", extra, proc)
    finally:
        proc.terminate()
        proc.wait(5)


def test_a_broker_setting_mosquitto_refuses_stops_wisp_run_fleet_in_one_line_with_mosquitto_s_words(tmp_path):
    fleet = tmp_path / "fleet"
    assert wisp(["provision", "deva", "--fleet", str(fleet), "--broker", f"127.0.0.1:{brokers.free_port()}"]) == 0
    (fleet / "mosquitto.d" / "tls.conf").write_text("listener 8883 no-such-host.invalid\n")   # a typo of the user's
    done = subprocess.run([sys.executable, "-m", "tools.cli", "run", "--fleet", str(fleet)], cwd=str(REPO),
                          env=dict(os.environ, WISP_RUN_DIR=str(tmp_path / "run")), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "the fleet's broker did not start" in done.stderr and "Error creating listener" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_moving_the_fleet_s_broker_names_the_devices_left_at_the_old_address(tmp_path, capsys):
    fleet = str(tmp_path / "fleet")
    assert wisp(["provision", "porch", "--fleet", fleet, "--broker", "192.168.1.20:1883"]) == 0
    assert wisp(["provision", "garage", "--fleet", fleet, "--broker", "192.168.1.20:1883"]) == 0
    capsys.readouterr()
    assert wisp(["provision", "shed", "--fleet", fleet, "--broker", "192.168.1.30:1884"]) == 0
    out = capsys.readouterr().out
    assert "the fleet's broker moved from 192.168.1.20:1883 to 192.168.1.30:1884" in out, out
    assert "garage, porch still connect to 192.168.1.20:1883" in out and "wisp provision garage" in out, out
    assert wisp(["provision", "porch", "--fleet", fleet]) == 0        # the fleet's address now: porch follows
    out = capsys.readouterr().out
    assert "moved" not in out and "garage still connects to 192.168.1.20:1883" in out, out
