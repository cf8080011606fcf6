# Test helpers for the hardware tools: a device on the simulated board with a full config
# (pins of every mode, I2C bus, sensors, publish allowlist) and sim_inputs.json control.
import json
import os

from fakeboard import make_device

from wisp.hal.sim import INPUTS_FILE

PINS = {"porch_light": {"pin": 5, "mode": "out", "min_interval_ms": 300},
        "heater": {"pin": 19, "mode": "out", "max_on_s": 0.3, "min_interval_ms": 0},
        "relay": {"pin": 18, "mode": "out", "min_interval_ms": 0},  # 0: no OUT_MIN_INTERVAL_MS, for quick tests
        "dimmer": {"pin": 25, "mode": "pwm", "freq": 1000},
        "soil": {"pin": 34, "mode": "adc"},
        "door": {"pin": 4, "mode": "in", "pull": "up"}}
CONFIG = {"i2c": {"scl": 22, "sda": 21, "freq": 400000},
          "sensors": {"room": {"type": "dht22", "pin": 15}, "attic": {"type": "dht11", "pin": 16}},
          "publish_allow": ["home/alerts/#", "home/+/temp"]}


def make(pins=PINS, extra=CONFIG, dev_id="t1"):
    return make_device(pins, dev_id, extra)


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
