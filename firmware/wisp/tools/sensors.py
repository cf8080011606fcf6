# Sensors by name: DHT11/DHT22 from config ("sensors": {"room": {"type": "dht22", "pin": 15}})
# and "chip", the ESP32's own temperature.
import time

from wisp import limits
from wisp.pins import pin_error

TYPES = ("dht11", "dht22")
_last = {}  # name -> (ticks_ms, board, (temp, hum)): DHTs must rest between reads


def _spec_error(dev, name, spec):
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        return "Error: sensor '%s': type must be dht11 or dht22" % name
    num = spec.get("pin")
    used = {p.num: n for n, p in dev.pins.items()}
    err = pin_error(num, dev.board, used)
    if not err and num in dev.board.input_only_pins:
        err = "GPIO%d is input-only; a DHT needs a pin that can also drive" % num
    return "Error: sensor '%s': %s" % (name, err) if err else None


async def sensor_read(dev, args):
    name = args["name"]
    if name == "chip":
        return "chip: temp=%.1f C" % dev.board.chip_temp()
    spec = dev.config.get("sensors")
    spec = spec.get(name) if isinstance(spec, dict) else None
    err = _spec_error(dev, name, spec)
    if err:
        return err
    try:
        temp, hum = reading(dev, name, spec)
    except Exception:
        return "Error: sensor '%s' (%s on GPIO%d) did not answer; check wiring" % (name, spec["type"], spec["pin"])
    return "%s: temp=%.1f C, hum=%.0f %%" % (name, temp, hum)  # key=value: routines can pick either


def reading(dev, name, spec):
    """(temp, hum) of a DHT, from the last read if it is under SENSOR_CACHE_MS old: a read blocks
    the whole board ~270 ms (the driver's 250 ms + 18 ms start signal, then ~5 ms with IRQs
    off), and a DHT22 gives stale values when read more often than every 2 s. Raises OSError."""
    last = _last.get(name)
    if last and last[1] is dev.board and time.ticks_diff(time.ticks_ms(), last[0]) < limits.SENSOR_CACHE_MS:
        return last[2]
    value = dev.board.dht(spec["pin"], spec["type"])
    _last[name] = (time.ticks_ms(), dev.board, value)
    return value
