# Test helpers for the hardware tools: a device on the simulated board with a full config
# (pins of every mode, I2C bus, sensors, publish allowlist) and sim_inputs.json control.
import json
import os

from fakeboard import RecordingLink
from wisp import pins as pins_mod
from wisp.device import Device
from wisp.hal.sim import INPUTS_FILE, Board

PINS = {"porch_light": {"pin": 5, "mode": "out", "min_interval_ms": 300},
        "heater": {"pin": 19, "mode": "out", "max_on_s": 0.3},
        "relay": {"pin": 18, "mode": "out"},
        "dimmer": {"pin": 25, "mode": "pwm", "freq": 1000},
        "soil": {"pin": 34, "mode": "adc"},
        "door": {"pin": 4, "mode": "in", "pull": "up"}}
CONFIG = {"i2c": {"scl": 22, "sda": 21, "freq": 400000},
          "sensors": {"room": {"type": "dht22", "pin": 15}, "attic": {"type": "dht11", "pin": 16}},
          "publish_allow": ["home/alerts/#", "home/+/temp"]}


def make(pins=PINS, extra=CONFIG, dev_id="t1"):
    logged = []
    board = Board()
    board.exit_on_reset = False
    cfg = {"id": dev_id, "broker": {"host": "x", "port": 1}}
    cfg.update(extra)
    dev = Device(cfg, board, pins_mod.setup(pins, board, logged.append))
    dev.link = RecordingLink()
    dev.logged = logged
    return dev


def set_inputs(obj):
    """Write sim_inputs.json the way a test harness would (None removes it)."""
    if obj is None:
        try:
            os.remove(INPUTS_FILE)
        except OSError:
            pass
        return
    with open(INPUTS_FILE, "w") as f:
        json.dump(obj, f)


def check(cond, what):
    if not cond:
        raise Exception(what)
