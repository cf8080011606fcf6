"""The example flow of docs/node-red.md as a file: what the guide says about it holds without
running Node-RED (tools/nodered_check.py runs it in a real one), and the checker, given no
Node-RED, says so in one line and starts nothing."""
import json

import pytest

from tools import nodered_check
from tools import sim as sims

FLOW = json.loads(nodered_check.FLOW.read_text())


def _of(kind):
    return [n for n in FLOW if n["type"] == kind]


def test_every_wire_and_broker_reference_names_a_node_of_the_flow():
    ids = [n["id"] for n in FLOW]
    assert len(ids) == len(set(ids))
    for node in FLOW:
        for target in (t for out in node.get("wires", []) for t in out):
            assert target in ids, (node["id"], target)
        if node["type"].startswith("mqtt "):
            assert node["broker"] in ids, node["id"]
        if "z" in node:
            assert node["z"] in ids, node["id"]


def test_it_publishes_at_qos_1_never_retained_and_reads_as_the_guide_says():
    (broker,) = _of("mqtt-broker")
    assert broker["protocolVersion"] == "4" and broker["cleansession"] is True
    (out,) = _of("mqtt out")
    assert out["retain"] == "false" and out["qos"] == "1" and out["topic"] == ""  # msg.topic names it
    for node in _of("mqtt in"):
        assert node["datatype"] == "auto-detect" and node["rap"] is False, node["name"]


def test_its_device_is_the_one_make_run_starts():
    (tab,) = _of("tab")
    assert {e["name"]: e["value"] for e in tab["env"]} == {"WISP_DEVICE": "dev1"}
    pins = {n["topic"] for n in _of("inject") if n["topic"]}  # the set/<pin> injects name their pin
    assert pins and pins <= set(sims.DEFAULT_PINS)


def test_the_checker_without_node_red_starts_nothing(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(nodered_check, "Stack", lambda *a, **k: pytest.fail("no stack may start"))
    assert nodered_check.main(str(tmp_path / "no-node-red")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wisp: no Node-RED at '{tmp_path / 'no-node-red'}'") and len(err.splitlines()) == 1
