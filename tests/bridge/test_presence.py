"""Whether a bridge is up, as anyone on the broker sees it: wisp/bridge/<name>/status, retained, online while the
bridge runs, offline once it stops or dies (its will), and still online while another bridge of the same name
runs; and Home Assistant told of it (a connectivity binary sensor). Real mosquitto, real bridge processes (a
killed process is the only way to see the broker's will)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bridge import ha
from bridge import mqtt_wire as wire
from bridge.config import ConfigError, load_config
from tests.e2e import ha_rules
from tests.support import Probe
from tools import process
from tools.broker import start_mosquitto
from tools.paths import REPO

TOPIC = "wisp/bridge/{}/status"


def start_bridge(broker, name, workdir: Path, **extra_env) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISP_")}
    env.update(WISP_BROKER=f"{broker.host}:{broker.port}", WISP_BRIDGE_NAME=name,
               WISP_LOCAL_URL="http://127.0.0.1:9/v1", PYTHONPATH=str(REPO), **extra_env)
    log = open(workdir / f"bridge-{name}-{len(list(workdir.iterdir()))}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return proc


def retained(broker, name) -> dict:
    """What a client subscribing now is told (the retained message)."""
    probe = Probe(broker.host, broker.port, topics=(TOPIC.format(name),))
    try:
        return probe.wait_for(TOPIC.format(name), timeout=5)
    finally:
        probe.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of its own: the presence these bridges leave retained is theirs alone to read."""
    b = start_mosquitto(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="wisp-presence-"))


def test_online_while_running_offline_when_stopped_or_killed(broker, workdir):
    probe = Probe(broker.host, broker.port, topics=(TOPIC.format("+"),))
    try:
        proc = start_bridge(broker, "attic", workdir)
        online = probe.wait_for(TOPIC.format("attic"), lambda s: s.get("state") == "online", timeout=15)
        assert online["name"] == "attic" and online["tiers"] == ["local"] and online["v"] == 1
        assert retained(broker, "attic")["state"] == "online"  # a dashboard opened later sees it too
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert probe.wait_for(TOPIC.format("attic"), lambda s: s.get("state") == "offline", timeout=5)
        assert retained(broker, "attic")["state"] == "offline"

        proc = start_bridge(broker, "attic", workdir)
        again = probe.wait_for(TOPIC.format("attic"), lambda s: s.get("state") == "online", timeout=15)
        proc.kill()  # no goodbye: the broker publishes the bridge's will
        proc.wait()
        gone = probe.wait_for(TOPIC.format("attic"), lambda s: s.get("state") == "offline", timeout=10)
        assert gone["instance"] == again["instance"] != online["instance"]  # the killed bridge's own will
        assert retained(broker, "attic")["state"] == "offline"
    finally:
        probe.close()


def test_a_bridge_of_the_same_name_stopping_does_not_mark_a_running_one_offline(broker, workdir):
    probe = Probe(broker.host, broker.port, topics=(TOPIC.format("cellar"),))
    first = second = None
    try:
        first = start_bridge(broker, "cellar", workdir)
        mine = probe.wait_for(TOPIC.format("cellar"), lambda s: s.get("state") == "online", timeout=15)
        second = start_bridge(broker, "cellar", workdir)
        probe.wait_for(TOPIC.format("cellar"), lambda s: s.get("instance") != mine["instance"], timeout=15)
        second.send_signal(signal.SIGTERM)
        second.wait(15)
        probe.wait_for(TOPIC.format("cellar"), lambda s: s.get("state") == "offline", timeout=5)
        back = probe.wait_for(TOPIC.format("cellar"), lambda s: s.get("state") == "online", timeout=5)
        assert back["instance"] == mine["instance"]  # the one still running said so again
        assert retained(broker, "cellar")["state"] == "online"
        logs = "".join(p.read_text() for p in workdir.glob("bridge-*.log"))
        assert "another bridge is also named 'cellar'" in logs
    finally:
        probe.close()
        for proc in (first, second):
            if proc:
                process.end(proc)


def test_junk_on_its_presence_topic_leaves_a_bridge_answering_for_itself(broker, workdir):
    """Anyone may publish there on an open broker: JSON nested past what json reads is skipped (no traceback
    in the log), and a later offline from another instance is still answered with online."""
    probe = Probe(broker.host, broker.port, topics=(TOPIC.format("shed"),))
    proc = start_bridge(broker, "shed", workdir)
    try:
        mine = probe.wait_for(TOPIC.format("shed"), lambda s: s.get("state") == "online", timeout=15)
        probe.publish(TOPIC.format("shed"), b"[" * 100_000)
        probe.publish(TOPIC.format("shed"), {"v": 1, "state": "offline", "instance": "gone"})
        ours = mine["instance"]
        back = probe.wait_for(TOPIC.format("shed"), lambda s: isinstance(s, dict) and s.get("instance") == ours,
                              timeout=5)
        assert back["state"] == "online" and proc.poll() is None
    finally:
        probe.close()
        process.end(proc)
    logs = "".join(p.read_text() for p in workdir.glob("bridge-*.log"))
    assert "failed" not in logs and "Traceback" not in logs, logs  # junk is no error of the bridge's


def test_the_connect_packet_carries_a_retained_qos1_will():
    packet = wire.connect("wisp-bridge-1", 30, will=("wisp/bridge/a/status", b'{"state":"offline"}'))
    flags = packet[2 + 6 + 1]  # fixed header (2 bytes here), "MQTT" (6), level (1), then the flags
    assert flags & 0x04 and (flags >> 3) & 0x03 == 1 and flags & 0x20
    assert packet.endswith(b"\x00\x14wisp/bridge/a/status\x00\x13" + b'{"state":"offline"}')


@pytest.mark.parametrize("name", ["Attic", "a/b", "a+", "", "x" * 33])
def test_a_name_that_is_no_single_topic_level_of_the_id_characters_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="WISP_BRIDGE_NAME must be 1-32 characters"):
        load_config(None, {"WISP_BRIDGE_NAME": name} if name else {"WISP_BRIDGE_NAME": " "})
    toml = tmp_path / "wisp.toml"
    toml.write_text(f'[broker]\nname = "{name}"\n')
    with pytest.raises(ConfigError, match=r"\[broker\] name must be"):
        load_config(str(toml), {})


def test_the_default_name_is_the_host_name_made_fit_for_a_topic(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "Kitchen.Pi.local")
    assert load_config(None, {}).name == "kitchen-pi-local"


def test_home_assistant_is_told_of_the_bridge_and_told_again_when_it_starts(broker, workdir):
    topic = "homeassistant/binary_sensor/wisp_bridge_porch_pi/status/config"
    probe = Probe(broker.host, broker.port, topics=(topic,))
    proc = start_bridge(broker, "porch-pi", workdir)
    try:
        config = probe.wait_for(topic, timeout=15)
        assert ha_rules.check("binary_sensor", config) == [] and ha_rules.topic_errors(topic) == []
        assert config["stat_t"] == "wisp/bridge/porch-pi/status" and config["dev_cla"] == "connectivity"
        assert config["pl_on"] == "online" and config["val_tpl"] == "{{ value_json.state }}"
        assert config["def_ent_id"] == "binary_sensor.wisp_bridge_porch_pi_status"
        probe.publish("homeassistant/status", "online")  # Home Assistant's birth message after a restart
        assert probe.wait_for(topic, timeout=5) == config
    finally:
        process.end(proc)
        probe.publish(topic, b"", retain=True)
        probe.close()


def test_discovery_off_sends_nothing_to_home_assistant(broker, workdir):
    probe = Probe(broker.host, broker.port, topics=("homeassistant/#", TOPIC.format("quiet")))
    proc = start_bridge(broker, "quiet", workdir, WISP_HA="0")
    try:
        probe.wait_for(TOPIC.format("quiet"), lambda s: s.get("state") == "online", timeout=15)
        probe.publish("homeassistant/status", "online")
        seen = probe.drain(1.5)
        assert [t for t, _ in seen if t.startswith("homeassistant/") and "quiet" in t] == []
    finally:
        process.end(proc)
        probe.close()


@pytest.mark.parametrize("name", ["a--b", "_x_", "lab-2__b", "0"])
def test_any_bridge_name_gives_home_assistant_a_valid_entity_and_topic(name):
    topic, payload = ha.discovery(name)
    assert ha_rules.check("binary_sensor", json.loads(payload)) == [] and ha_rules.topic_errors(topic) == []


@pytest.mark.parametrize("prefix", ["", "/ha", "ha/", "ha/+", "h#"])
def test_a_discovery_prefix_that_is_no_plain_topic_is_refused(tmp_path, prefix):
    toml = tmp_path / "wisp.toml"
    toml.write_text(f'[ha]\nprefix = "{prefix}"\n')
    with pytest.raises(ConfigError, match=r"\[ha\] prefix must be a topic"):
        load_config(str(toml), {})


def _logs_say(workdir, words, timeout=15.0):
    """The logs of every bridge started in workdir, once `words` appear in all of them (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = [p.read_text() for p in sorted(workdir.glob("bridge-*.log"))]
        if all(words in log for log in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.1)


@pytest.mark.parametrize("first, second, words", [
    ({}, {"WISP_SHARED": "0"}, "takes every request (a plain subscription"),
    ({"WISP_SHARED": "0"}, {"WISP_SHARED": "0"}, "both take every request (plain subscriptions)"),
    ({"WISP_DEVICE_KEYS": "keys.json"}, {}, "holds signing keys for other devices than this one"),
], ids=["shared and plain", "two plain", "keys and none"])
def test_two_bridges_on_one_broker_that_would_answer_twice_or_not_at_all_say_so(own_broker, workdir, first,
                                                                                 second, words):
    """Bridges of one broker split the requests between them only when every one shares the subscription: a plain
    one beside it answered each request a second time (two model calls, paid twice), silently. A bridge with the
    fleet's signing keys beside one without: a provisioned device refuses the unsigned answers, and the keyed bridge
    ignores the devices it has no key for, so a request waited out its round on the wrong bridge, silently."""
    (workdir / "keys.json").write_text(json.dumps({"porch": "ab" * 32}))
    procs = [start_bridge(own_broker, "one", workdir, **first), start_bridge(own_broker, "two", workdir, **second)]
    try:
        logs = _logs_say(workdir, words)
    finally:
        for proc in procs:
            process.end(proc)
    assert len(logs) == 2 and all(words in log for log in logs), logs
    assert all("Traceback" not in log for log in logs)


def test_two_bridges_that_agree_say_nothing_of_each_other(own_broker, workdir):
    procs = [start_bridge(own_broker, "one", workdir), start_bridge(own_broker, "two", workdir)]
    try:
        logs = _logs_say(workdir, "bridge ready")
        time.sleep(1)
        logs = [p.read_text() for p in sorted(workdir.glob("bridge-*.log"))]
    finally:
        for proc in procs:
            process.end(proc)
    assert all("bridge ready" in log and "WARNING wisp.bridge:" not in log for log in logs), logs
