# Named pins at boot: the config entries checked against the pin safety policy (wisp/pins.py
# says why), the pins made and set to their boot level. One-shot: pins.setup loads this module
# and drops it after (wisp.unload), so the checks hold no heap while the device runs.
from wisp import limits
from wisp.pins import BY_LLM, LAST_FILE, WARM_FILE, NamedPin, _int_in, pin_error

MODES = ("out", "in", "pwm", "adc")
PULLS = (None, "up", "down")
EDGES = ("rising", "falling", "both")
KEYS = ("pin", "mode", "pull", "init", "min_interval_ms", "max_on_s", "freq",
        "routine", "edge", "ha", "confirm", "device_class", "aliases",
        "restore", "unit", "scale")  # read by inputs, ha, confirm, fastpath
RESTORES = ("off", "on", "last")  # an output's level at boot: off (safe), on, or the last one set
# What an input is, in Home Assistant's binary_sensor device classes, and its words for ON and OFF:
# a door is open or closed, not on or off. The fast path answers in these words (NamedPin.terms,
# set below); discovery passes the class on. Here, not in the fast path, which loads for every ask:
# as one 632-character string it was that module's largest block, the one a fragmented heap lacked.
DEVICE_CLASSES = ("|battery low normal|battery_charging charging not_charging|carbon_monoxide detected clear"
                  "|cold cold normal|connectivity connected disconnected|door open closed|garage_door open closed"
                  "|gas detected clear|heat hot normal|light light dark|lock unlocked locked|moisture wet dry"
                  "|motion detected clear|moving moving still|occupancy occupied clear|opening open closed"
                  "|plug plugged_in unplugged|power powered unpowered|presence home away|problem problem ok"
                  "|running running not_running|safety unsafe safe|smoke detected clear|sound detected clear"
                  "|tamper tampered clear|update available up_to_date|vibration detected clear|window open closed|")


def class_terms(cls):
    """(word for ON, word for OFF) of a device class, or None when there is no such class."""
    at = DEVICE_CLASSES.find("|%s " % cls) if isinstance(cls, str) and cls and " " not in cls else -1
    if at < 0:
        return None
    words = DEVICE_CLASSES[at + 1:DEVICE_CLASSES.find("|", at + 1)].split()
    return words[1], words[2]


def _num_in(v, lo, hi):
    return (_int_in(v, lo, hi) or isinstance(v, float)) and lo <= v <= hi

def _boot_level(spec, name, warm, last):
    """The level an output starts at: the one it had before a reset for memory (warm: what
    pins.keep_levels saved), else its restore choice (config checked; last: the levels of
    `restore: last` outputs), else 0 (safe)."""
    mode = spec.get("mode", "out")
    if name in warm and mode in ("out", "pwm") and not spec.get("max_on_s"):
        level = warm[name]
        ok = _num_in(level, 0, 100) if mode == "pwm" else _int_in(level, 0, 1)  # a duty may be 37.5
        return level if ok else 0
    restore = spec.get("restore", "off")
    if restore == "on":
        return 100 if mode == "pwm" else 1
    if restore != "last":
        return 0
    level = last.get(name, 0)
    return level if _num_in(level, 0, 100) else 0  # a pwm duty may be 37.5


def _check(spec, board, used):
    if not isinstance(spec, dict):
        return "must be an object like {\"pin\": 5, \"mode\": \"out\"}"
    for key in spec:
        if key not in KEYS:
            return "unknown key '%s' (keys: %s)" % (key, ", ".join(KEYS))
    num = spec.get("pin")
    err = pin_error(num, board, used)
    if err:
        return err
    mode = spec.get("mode", "out")
    if mode not in MODES:
        return "mode must be one of %s" % ", ".join(MODES)
    if mode in ("out", "pwm") and num in board.input_only_pins:
        return "GPIO%d is input-only and cannot be an output" % num
    if mode == "adc" and num not in board.adc_pins:
        return "analog input works only on GPIO32-39 (ADC1); ADC2 pins are blocked while Wi-Fi is on"
    pull = spec.get("pull")
    if pull not in PULLS:
        return "pull must be 'up' or 'down'"
    if pull and num in board.input_only_pins:
        return "GPIO%d has no internal pull resistor; leave out pull and wire one" % num
    if pull and mode != "in":
        return "pull is for inputs"
    ha = spec.get("ha")  # anything else was quietly the default entity
    if ha is not None and (mode not in ("out", "pwm") or ha not in ("light", "switch" if mode == "out" else "number")):
        return "ha must be 'light' (or left out) on an out or pwm pin"
    if spec.get("init", 0) not in (0, 1):
        return "init must be 0 or 1"
    if spec.get("confirm", False) not in (True, False):
        return "confirm must be true or false"
    err = _words_error(spec, mode)
    if err:
        return err
    if spec.get("init") == 1 and spec.get("max_on_s"):
        return "init 1 cannot go with max_on_s: it would stay on past its limit from boot"
    err = _restore_error(spec, mode)
    if err:
        return err
    if not _int_in(spec.get("min_interval_ms", 0), 0, limits.MAX_MIN_INTERVAL_MS):
        return "min_interval_ms must be 0-%d" % limits.MAX_MIN_INTERVAL_MS
    if not _num_in(spec.get("max_on_s", 0), 0, limits.MAX_ON_S):
        return "max_on_s must be 0 (no limit) to %d" % limits.MAX_ON_S
    if not _int_in(spec.get("freq", limits.PWM_DEFAULT_FREQ), limits.PWM_FREQ_MIN, limits.PWM_FREQ_MAX):
        return "freq must be %d-%d Hz" % (limits.PWM_FREQ_MIN, limits.PWM_FREQ_MAX)
    return None


def _words_error(spec, mode):
    """Why `device_class` or `aliases` is wrong, or None."""
    cls = spec.get("device_class")
    if cls is not None and (mode != "in" or class_terms(cls) is None):
        return "device_class is for inputs, one of: " + " ".join(
            entry.split(" ", 1)[0] for entry in DEVICE_CLASSES.split("|") if entry)
    aliases = spec.get("aliases", [])
    if not isinstance(aliases, list) or len(aliases) > limits.MAX_ALIASES:
        return "aliases must be a list of at most %d names" % limits.MAX_ALIASES
    for a in aliases:
        if not isinstance(a, str) or not 0 < len(a) <= limits.MAX_ALIAS_LEN:
            return "each alias must be a name of 1-%d characters" % limits.MAX_ALIAS_LEN
    return None


def _restore_error(spec, mode):
    """Why `restore`, `unit` or `scale` is wrong, or None."""
    restore = spec.get("restore", "off")
    if restore not in RESTORES or (restore != "off" and mode not in ("out", "pwm")):
        return "restore is for outputs: off, on or last"
    if restore != "off" and (spec.get("confirm") or spec.get("max_on_s") or spec.get("init")):
        return "restore on/last cannot go with confirm, max_on_s or init"
    unit, scale = spec.get("unit"), spec.get("scale")
    if (unit is not None or scale is not None) and mode != "adc":
        return "unit and scale are for adc pins"
    if unit is not None and not (isinstance(unit, str) and 0 < len(unit) <= 8):
        return "unit must be 1-8 characters"
    if unit == "mV" and scale is None:  # the raw 0-4095 is no voltage: V alone is calibrated
        return "unit mV needs scale [k, b] (raw 0-4095 to mV); V alone gives calibrated volts"
    if scale is not None and not (isinstance(scale, list) and len(scale) == 2
                                  and all(_num_in(x, -1e9, 1e9) for x in scale)):
        return "scale must be [k, b]: the value is raw * k + b"
    return None


def _trigger_error(spec):
    """Why an input's routine trigger ("routine", "edge") cannot work, or None."""
    routine = spec.get("routine")
    if routine is not None and (not isinstance(routine, str) or not routine):
        return "routine must be a routine name"
    if spec.get("edge", "both") not in EDGES:
        return "edge must be rising, falling or both"
    return None


def _make_hw(spec, board, value):
    num, mode = spec["pin"], spec.get("mode", "out")
    if mode == "pwm":  # safe state: duty 0
        return board.pwm(num, spec.get("freq", limits.PWM_DEFAULT_FREQ), 0)
    if mode == "adc":
        return board.adc(num)
    return board.pin(num, mode, spec.get("pull"), value)


def setup(config_pins, board, log):
    """Build {name: NamedPin}; bad entries are logged and left out, nothing else touched."""
    from wisp import store
    pins, used = {}, {}
    warm, last = store.load_dict(WARM_FILE, log), store.load_dict(LAST_FILE, log)
    for name in sorted(config_pins):
        spec = config_pins[name]
        err = _check(spec, board, used)
        if not err:
            level = _boot_level(spec, name, warm, last)
            try:  # an output kept over a reset starts at its level, init or not: no blip
                hw = _make_hw(spec, board, level if name in warm else spec.get("init", 0))
            except Exception as e:  # the port refused the pin: report it, keep booting
                err = "GPIO%d could not be set up: %s" % (spec["pin"], e)
        if err:
            log("config error: pin '%s': %s" % (name, err))
            continue
        num = spec["pin"]
        trigger_err = _trigger_error(spec)
        if trigger_err:  # the pin works; only its routine is left out, as it always was
            log("config error: pin '%s': %s; its routine will not run" % (name, trigger_err))
            spec = dict(spec, routine=None)
        if num in board.caution_pins:
            log("warning: pin '%s': GPIO%d: %s" % (name, num, board.caution_pins[num]))
        pin = pins[name] = NamedPin(name, num, spec.get("mode", "out"), hw, spec, log)
        if pin.device_class:  # checked above: an input of a known class
            pin.terms = class_terms(pin.device_class)
        used[num] = name
        pin.by_llm = (warm if name in warm else last).get(name + BY_LLM)  # the LLM's level is still its
        if level:
            pin._apply(level)
    store.remove(WARM_FILE + ".json")  # used once: a later reset (power cut, crash) starts safe
    if warm:
        log("outputs back at their levels from before the reset: " + ", ".join(
            "%s=%s" % (name, pins[name].read()) for name in sorted(warm) if name in pins))
    return pins
