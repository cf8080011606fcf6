# First thing at reset (boot.py): drive the configured outputs to their safe level before the
# firmware's ~25 modules load (about 1 s in which a relay's input would float); only the board
# (wisp.hal) is loaded for it. wisp/pins.py applies the full policy afterwards.
import json

from wisp.hal import pinmap

WARM = "pins_warm.json"  # wisp/pins.py WARM_FILE: levels kept over a reset the firmware made for memory


def _load(path):
    try:
        with open(path) as f:
            got = json.load(f)
        return got if isinstance(got, dict) else {}
    except Exception:  # none, or broken: the safe levels (wisp/config.py reports a bad config later)
        return {}


def safe_levels(path="config.json", warm_path=WARM):
    """[(gpio, level)] of the outputs in config.json: "out" at its init (0 unless 1), or at its
    level from before a reset for memory (wisp/pins.py keep_levels); "pwm" at 0 until wisp/pins.py
    starts it. Pins the board must never drive (flash bus, missing, input-only) are left alone."""
    pins = _load(path).get("pins")
    warm = _load(warm_path) if isinstance(pins, dict) else {}
    out = []
    for name, spec in pins.items() if isinstance(pins, dict) else ():
        num = spec.get("pin") if isinstance(spec, dict) else None
        mode = spec.get("mode", "out") if num is not None else None
        if mode not in ("out", "pwm") or not isinstance(num, int) or not 0 <= num <= pinmap.MAX_PIN \
                or num in pinmap.FORBIDDEN or num in pinmap.MISSING or num in pinmap.INPUT_ONLY:
            continue
        level = warm.get(name, spec.get("init")) if not spec.get("max_on_s") else 0
        out.append((num, 1 if mode == "out" and level == 1 else 0))
    return out


def drive(board, path="config.json"):
    """Set the levels through the board (hal/esp32.py or hal/sim.py); returns them."""
    levels = safe_levels(path)
    for num, level in levels:
        board.pin(num, "out", value=level)
    return levels
