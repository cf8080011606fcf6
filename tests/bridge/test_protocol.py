"""The device limits and device-id rule the bridge mirrors agree with the firmware, which states them once."""
import re
from pathlib import Path

import pytest

from bridge import protocol
from tests.support import firmware_limit

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "wisp"

# bridge name -> firmware/wisp/limits.py name
MIRRORED = {"MAX_PAYLOAD": "MAX_PAYLOAD", "MAX_ASK_TEXT": "MAX_ASK_TEXT", "MAX_ID": "MAX_ID",
            "ROUND_TIMEOUT_MS": "ROUND_TIMEOUT_MS"}


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_mirrored_limit_matches_the_firmware(name):
    assert getattr(protocol, name) == firmware_limit(MIRRORED[name]), f"bridge/protocol.py {name} is stale"


def firmware_value(name: str) -> str:
    """`NAME = value` from limits.py or config.py, wherever the firmware keeps it (const() or not)."""
    for module in ("limits.py", "config.py"):
        found = re.search(r"^%s\s*=\s*(?:const\()?(.+?)\)?\s*(#.*)?$" % re.escape(name),
                          (FIRMWARE / module).read_text(), re.M)
        if found:
            return found.group(1).strip()
    raise KeyError(name)


def test_device_id_rule_matches_the_firmware():
    assert protocol.MAX_DEVICE_ID == int(firmware_value("MAX_ID_LEN"))
    assert protocol.DEVICE_ID_CHARS == firmware_value("ID_CHARS").strip("\"'")
    assert protocol.is_device_id("a" * protocol.MAX_DEVICE_ID) and not protocol.is_device_id("a" * 33)
    assert all(protocol.is_device_id(c) for c in protocol.DEVICE_ID_CHARS)
    assert not any(protocol.is_device_id(c) for c in "A./+#$ ")


def test_topics_build_and_parse():
    assert protocol.topic("dev1", protocol.LLM_RES) == "wisp/dev1/llm/res"
    assert protocol.topic("dev1", protocol.SET, "porch") == "wisp/dev1/set/porch"
    assert protocol.every_device(protocol.LLM_REQ) == "wisp/+/llm/req"
    assert protocol.device_filter("dev1") == "wisp/dev1/#"
    assert protocol.parse("wisp/dev1/llm/req") == ("dev1", ["llm", "req"])
    assert protocol.parse("wisp/dev1/state/door") == ("dev1", ["state", "door"])
    for junk in ("wisp/dev1", "other/dev1/status", "wisp/BAD/status", "wisp//status"):
        assert protocol.parse(junk) is None


def test_device_class_states_match_the_firmwares_words():
    """The model is told what an input's level means in the words the device answers in
    (pin_setup.py DEVICE_CLASSES, the one table of classes and their words)."""
    source = (FIRMWARE / "pin_setup.py").read_text()
    table = "".join(re.findall(r'"([^"]*)"', re.search(r"^DEVICE_CLASSES = \((.*?)\)$", source, re.M | re.S).group(1)))
    firmware = {c: (on, off) for c, on, off in (entry.split() for entry in table.strip("|").split("|"))}
    assert len(firmware) > 20 and protocol.DEVICE_CLASS_STATES == firmware
