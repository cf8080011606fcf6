# Named pins from config (`porch_light: {pin: 5, mode: out}`): the LLM sees names, never numbers.
# Pins that would crash or brick the board are refused here, once, at boot; outputs start in
# their safe state (off, or the configured `init`).

MODES = ("out", "in")
PULLS = (None, "up", "down")


class NamedPin:
    def __init__(self, name, num, mode, hw):
        self.name, self.num, self.mode, self.hw = name, num, mode, hw

    def read(self):
        return self.hw.value()

    def write(self, v):
        self.hw.value(v)


def _check(name, spec, board, used):
    if not isinstance(spec, dict):
        return "must be an object like {\"pin\": 5, \"mode\": \"out\"}"
    num = spec.get("pin")
    if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num <= board.max_pin:
        return "pin must be a GPIO number 0-%d" % board.max_pin
    if num in board.forbidden_pins:
        return "GPIO%d is reserved (flash bus) and can never be used" % num
    if num in used:
        return "GPIO%d is already used by '%s'" % (num, used[num])
    if spec.get("mode", "out") not in MODES:
        return "mode must be 'out' or 'in'"
    if spec.get("pull") not in PULLS:
        return "pull must be 'up' or 'down'"
    init = spec.get("init", 0)
    if init not in (0, 1):
        return "init must be 0 or 1"
    return None


def setup(config_pins, board, log):
    """Build {name: NamedPin}; bad entries are logged and left out."""
    pins, used = {}, {}
    for name in sorted(config_pins):
        spec = config_pins[name]
        err = _check(name, spec, board, used)
        if err:
            log("config error: pin '%s': %s" % (name, err))
            continue
        mode = spec.get("mode", "out")
        hw = board.pin(spec["pin"], mode, spec.get("pull"), spec.get("init", 0))
        pins[name] = NamedPin(name, spec["pin"], mode, hw)
        used[spec["pin"]] = name
    return pins
