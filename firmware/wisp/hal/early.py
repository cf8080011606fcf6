# First thing at reset (boot.py): drive the configured outputs to their safe level before the
# firmware's ~25 modules load (about 1 s in which a relay's input would float); only the board
# (wisp.hal) is loaded for it. wisp/pins.py applies the full policy afterwards.
import json

from wisp.hal import pinmap


def safe_levels(path="config.json"):
    """[(gpio, level)] of the outputs in config.json: "out" at its init (0 unless 1), "pwm" at 0.
    Pins the board must never drive (flash bus, missing, input-only) are left alone."""
    try:
        with open(path) as f:
            pins = json.load(f).get("pins")
    except Exception:  # no or broken config: wisp/config.py reports it later
        return []
    out = []
    for spec in pins.values() if isinstance(pins, dict) else ():
        num = spec.get("pin") if isinstance(spec, dict) else None
        mode = spec.get("mode", "out") if num is not None else None
        if mode not in ("out", "pwm") or not isinstance(num, int) or not 0 <= num <= pinmap.MAX_PIN \
                or num in pinmap.FORBIDDEN or num in pinmap.MISSING or num in pinmap.INPUT_ONLY:
            continue
        out.append((num, 1 if mode == "out" and spec.get("init") == 1 else 0))
    return out


def drive(board, path="config.json"):
    """Set the levels through the board (hal/esp32.py or hal/sim.py); returns them."""
    levels = safe_levels(path)
    for num, level in levels:
        board.pin(num, "out", value=level)
    return levels
