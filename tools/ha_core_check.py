"""Optional check, outside `make test` (it needs a Home Assistant core install and takes a minute or
two): a real Home Assistant discovers a wisp device (the firmware on the unix port, the config of
tests/e2e/test_home_assistant.py) and a bridge through real mosquitto. Prints every entity Home Assistant
registered with its category, device class and state (while the DHT answers, after it stops,
once it is back), the device registry entry, and every Home Assistant warning or error that
mentions MQTT or wisp. Exit status 1 when an entity is missing or a warning names wisp.

    python3.13 -m venv /tmp/havenv && /tmp/havenv/bin/pip install homeassistant \
        home-assistant-frontend==<the version in homeassistant/package_constraints.txt> \
        paho-mqtt==<the version in homeassistant/components/mqtt/manifest.json>
    .venv/bin/python -m tools.ha_core_check /tmp/havenv/bin/hass
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.test_home_assistant import EXTRA, INPUTS, PINS
from tests.support import Probe, until
from tools import broker as brokers
from tools import sim

ENTITIES = 16  # 7 pins, 2 DHT sensors, 5 diagnostics, the restart button; the bridge's connectivity sensor
BRIDGE_ENTITY = "binary_sensor.wisp_bridge_check_bridge_status"
HA_START_S = 300
CONFIG = ("homeassistant:\n  name: check\n  latitude: 0\n  longitude: 0\n  elevation: 0\n  unit_system: metric\n"
          "  time_zone: UTC\n  country: GB\n  currency: EUR\nlogger:\n  default: warning\n"
          "recorder:\n  commit_interval: 1\n")


def _mqtt_entry(host, port):
    entry = {"entry_id": "01JWISPCHECK00000000000000", "version": 1, "minor_version": 2, "domain": "mqtt",
             "title": "broker", "data": {"broker": host, "port": port}, "options": {"discovery": True},
             "pref_disable_new_entities": False, "pref_disable_polling": False, "source": "user",
             "unique_id": None, "disabled_by": None, "discovery_keys": {}, "subentries": [],
             "created_at": "2025-01-01T00:00:00+00:00", "modified_at": "2025-01-01T00:00:00+00:00"}
    return {"version": 1, "minor_version": 5, "key": "core.config_entries", "data": {"entries": [entry]}}


def _states(db):
    con = sqlite3.connect(db)
    try:
        return dict(con.execute(
            "select m.entity_id, s.state from states s join states_meta m on s.metadata_id = m.metadata_id "
            "where s.state_id in (select max(state_id) from states group by metadata_id) "
            "and m.entity_id like '%wisp%'").fetchall())
    except sqlite3.OperationalError:  # the recorder has not made its tables yet
        return {}
    finally:
        con.close()


def main(hass_bin):
    if hass_bin in ("-h", "--help"):
        print(__doc__)
        return 0
    found = shutil.which(hass_bin)
    if not found:   # before anything starts: a missing hass must leave no broker or temporary folder behind
        print(f"wisp: no Home Assistant `hass` at {hass_bin!r}: give its path, `python -m tools.ha_core_check "
              f"<path to hass>` (tools/ha_core_check.py says how to install one)", file=sys.stderr)
        return 2
    hass_bin = found
    root = Path(tempfile.mkdtemp(prefix="wisp-ha-core-"))
    broker = brokers.start_mosquitto(root / "broker")
    cfg = root / "ha"
    (cfg / ".storage").mkdir(parents=True)
    (cfg / "configuration.yaml").write_text(CONFIG)
    (cfg / ".storage" / "core.config_entries").write_text(json.dumps(_mqtt_entry(broker.host, broker.port)))
    hass = subprocess.Popen([hass_bin, "-c", str(cfg), "--skip-pip"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    dev, bridge, probe, db = None, None, None, cfg / "home-assistant_v2.db"
    try:
        probe = Probe(broker.host, broker.port, topics=("homeassistant/status",))
        probe.wait_for("homeassistant/status", lambda v: v == "online", timeout=HA_START_S)
        wd = root / "device"
        wd.mkdir()
        (wd / "sim_inputs.json").write_text(json.dumps(INPUTS))
        sim.write_config(wd, "ha1", broker.host, broker.port, PINS, dict(EXTRA, ha={"diagnostics_s": 5,
                                                                                      "url": "http://bridge.lan:8080"}))
        dev = sim.start_device(wd, stdout=open(wd / "console.log", "wb"), stderr=subprocess.STDOUT)
        env = {**os.environ, "WISP_BROKER": f"{broker.host}:{broker.port}", "WISP_BRIDGE_NAME": "check-bridge"}
        bridge = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=str(root), env=env,
                                  stdout=open(root / "bridge.log", "wb"), stderr=subprocess.STDOUT)
        answering = until(lambda: (s := _states(db)) and len(s) >= ENTITIES and s.get(BRIDGE_ENTITY) == "on" and s,
                          timeout=60, what="entities")
        (wd / "sim_inputs.json").write_text(json.dumps(dict(INPUTS, dht={})))  # the DHT disconnected
        failed = until(lambda: (s := _states(db)).get("sensor.wisp_ha1_room_humidity") == "unavailable" and s,
                       timeout=20, what="the DHT sensor unavailable")
        (wd / "sim_inputs.json").write_text(json.dumps(INPUTS))
        back = until(lambda: (s := _states(db)).get("sensor.wisp_ha1_room_humidity") not in (None, "unavailable")
                     and s, timeout=20, what="the DHT sensor back")
        bridge.terminate()  # the bridge stops: its sensor turns off
        bridge.wait(15)
        stopped = until(lambda: (s := _states(db)).get(BRIDGE_ENTITY) == "off" and s, timeout=20,
                        what="the bridge's sensor off")
    finally:
        hass.terminate()  # a clean stop writes the registries
        hass.wait(60)
        for proc in (dev, bridge):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait()
        if probe:
            probe.close()
        broker.stop()
    entities = json.loads((cfg / ".storage" / "core.entity_registry").read_text())["data"]["entities"]
    mine = [e for e in entities if e["platform"] == "mqtt"]
    for e in mine:
        eid = e["entity_id"]
        print(f"{eid:42} {e.get('entity_category') or '-':10} {e.get('original_device_class') or '-':16} "
              f"{answering.get(eid)!r:>10} {failed.get(eid)!r:>14} {back.get(eid)!r:>10}")
    print(f"{BRIDGE_ENTITY} once the bridge stopped: {stopped.get(BRIDGE_ENTITY)!r}")
    for d in json.loads((cfg / ".storage" / "core.device_registry").read_text())["data"]["devices"]:
        if any(i[0] == "mqtt" for i in d["identifiers"]):
            print({k: d.get(k) for k in ("name", "manufacturer", "model", "hw_version", "sw_version",
                                         "serial_number", "connections", "configuration_url")})
    log = (cfg / "home-assistant.log").read_text(errors="replace").splitlines()
    complaints = [line for line in log if ("WARNING" in line or "ERROR" in line)
                  and ("mqtt" in line.lower() or "wisp" in line)]
    print("Home Assistant warnings and errors about MQTT or wisp:", len(complaints))
    for line in complaints:
        print("  " + line[:300])
    shutil.rmtree(root, ignore_errors=True)
    return 0 if len(mine) == ENTITIES and not any("wisp" in line for line in complaints) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "hass"))
