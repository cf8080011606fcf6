# Named pins from config (`porch_light: {pin: 26, mode: out}`): the LLM sees names, never numbers.
# The safety policy lives here, whoever asks: pins that would crash or brick the board are
# refused at boot, outputs start in their safe state (or, by choice, on or at their last level:
# `restore`, never for confirm or timed pins), writes obey a rate limit and a maximum on-time
# with automatic off.
import asyncio
import time

from wisp import limits

MODES = ("out", "in", "pwm", "adc")
PULLS = (None, "up", "down")
EDGES = ("rising", "falling", "both")
KEYS = ("pin", "mode", "pull", "init", "min_interval_ms", "max_on_s", "freq",
        "routine", "edge", "ha", "confirm", "device_class", "aliases",
        "restore", "unit", "scale")  # read by inputs, ha, confirm, fastpath
RESTORES = ("off", "on", "last")  # an output's level at boot: off (safe), on, or the last one set
LAST_FILE = "pins_last"           # store name of the levels of `restore: last` outputs
# What an input is, in Home Assistant's binary_sensor device classes: a door is open or closed,
# not on or off (the fast path answers in these terms; discovery passes the class on).
DEVICE_CLASSES = (" battery battery_charging carbon_monoxide cold connectivity door garage_door gas heat"
                  " light lock moisture motion moving occupancy opening plug power presence problem"
                  " running safety smoke sound tamper update vibration window ")


def _int_in(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _num_in(v, lo, hi):
    return (_int_in(v, lo, hi) or isinstance(v, float)) and lo <= v <= hi


class NamedPin:
    """level: 0/1 for out and in, duty percent 0-100 for pwm, raw 0-4095 for adc. Carries its
    config entry as checked at boot (setup), so no one re-reads config dicts later."""

    def __init__(self, name, num, mode, hw, spec, log):
        self.name, self.num, self.mode, self.hw, self.log = name, num, mode, hw, log
        # relays wear out: an output switches on again only after this long (config may say 0)
        self.min_interval_ms = spec.get("min_interval_ms", limits.OUT_MIN_INTERVAL_MS if mode == "out" else 0)
        self.max_on_ms = int(spec.get("max_on_s", 0) * 1000)
        self.freq = spec.get("freq", limits.PWM_DEFAULT_FREQ)
        self.confirm = spec.get("confirm", False)  # the LLM may switch it on only after the user's "yes"
        self.ha = "light" if spec.get("ha") == "light" else "switch"  # Home Assistant component of an output
        self.routine = spec.get("routine")  # an input's routine, run on its edge (wisp/inputs.py)
        self.edge = spec.get("edge", "both")
        self.device_class = spec.get("device_class")  # an input's kind (DEVICE_CLASSES), or None
        self.aliases = spec.get("aliases", ())  # other names users call it by ("porch lamp")
        self.restore = spec.get("restore", "off")
        self.unit = spec.get("unit")    # adc: what state() reports in ("V": calibrated volts)...
        self.scale = spec.get("scale")  # ...or [k, b]: raw * k + b
        self.duty = 0            # pwm: percent
        self.bright = 100        # pwm: the last duty other than 0, what "ON" turns it back on to
        self.notify = None       # async fn(name), told when the pin turns off by itself
        self._changed = None     # ticks_ms of the last change of level
        self._on_since = None
        self._off_task = None

    def read(self):
        if self.mode == "pwm":
            return self.duty
        if self.mode == "adc":
            return self.hw.read()
        return self.hw.value()

    def state(self):
        """Home Assistant style text for state/<name>: ON/OFF, a pwm duty percent, an adc
        reading (raw, or in the pin's unit)."""
        if self.mode == "pwm":
            return str(self.duty)
        if self.mode != "adc":
            return "ON" if self.read() else "OFF"
        if self.scale:
            return "%.6g" % (self.read() * self.scale[0] + self.scale[1])
        return "%.3f" % self.hw.volts() if self.unit == "V" else str(self.read())

    def refusal(self, level):
        """Error text if changing to `level` now would break this pin's policy, else None."""
        if self.mode not in ("out", "pwm"):
            return "Error: pin '%s' is not an output" % self.name
        if level == self.read() or not level:
            return None  # no change, or off: the safe direction is never refused
        if self._changed is not None and self.min_interval_ms:
            if time.ticks_diff(time.ticks_ms(), self._changed) < self.min_interval_ms:
                return "Error: %s changed less than %d ms ago; try later" % (self.name, self.min_interval_ms)
        return None

    def write(self, level, notify=None, off_after_ms=0):
        """Set the level (0/1, or duty percent for pwm) under the policy. Returns an error text,
        or None when done. off_after_ms > 0 schedules the off (a pulse). notify: async fn(name),
        kept and awaited when the pin later turns off by itself."""
        err = self.refusal(level)
        if err:
            return err
        if notify:
            self.notify = notify
        was_on = self.read()
        if level != was_on:
            self._apply(level)
        if not level:
            self._disarm()
            return None
        now = time.ticks_ms()
        if not was_on:
            self._on_since = now
        # each on-write sets the off schedule anew: the pulse end, else what is left of
        # the max on-time (counted from the first on), else none
        ms = off_after_ms
        if self.max_on_ms:
            left = self.max_on_ms - time.ticks_diff(now, self._on_since)
            ms = min(ms, left) if ms else left
        self._disarm()
        if ms:
            self._off_task = asyncio.create_task(self._auto_off(max(ms, 0)))
        return None

    def set_freq(self, freq):
        self.freq = freq
        self.hw.freq(freq)

    def watch(self, handler, trigger, board):
        """handler(level) on edges of an input pin (soft IRQ on ESP32, polled on the sim)."""
        board.irq(self.hw, handler, trigger)

    changes = 0  # level changes of all pins: a routine run counts its own (wisp/routines.py)

    def _apply(self, level):
        if self.mode == "pwm":
            self.duty = level
            self.bright = level or self.bright
            self.hw.duty_u16(int(level * 65535 // 100))
        else:
            self.hw.value(1 if level else 0)
        self._changed = time.ticks_ms()
        NamedPin.changes += 1
        if self.restore == "last":
            _remember(self.name, level)

    def _disarm(self):
        if self._off_task:
            self._off_task.cancel()
            self._off_task = None

    async def _auto_off(self, ms):
        await asyncio.sleep_ms(ms)
        self._off_task = None
        self._apply(0)
        self.log("%s turned off after %d ms (max on-time or pulse)" % (self.name, ms))
        if self.notify:
            try:
                await self.notify(self.name)
            except Exception as e:  # publishing may fail; the pin is off either way
                self.log("error: state of %s not published: %r" % (self.name, e))


def _remember(name, level):
    # only `restore: last` outputs pay for this: one small file rewritten per change
    from wisp import store
    last = store.load(LAST_FILE, {})
    if not isinstance(last, dict):
        last = {}
    if last.get(name) != level:
        last[name] = level
        store.save(LAST_FILE, last)


def _boot_level(spec, name):
    """The level an output starts at: its restore choice (config checked), else 0 (safe)."""
    restore = spec.get("restore", "off")
    if restore == "on":
        return 100 if spec.get("mode") == "pwm" else 1
    if restore != "last":
        return 0
    from wisp import store
    last = store.load(LAST_FILE, {})
    level = last.get(name, 0) if isinstance(last, dict) else 0
    return level if _int_in(level, 0, 100) else 0


def pin_error(num, board, used, role="pin"):
    """Why GPIO `num` cannot be used at all, or None. Shared with the I2C bus and sensors."""
    if not _int_in(num, 0, board.max_pin):
        return "%s must be a GPIO number 0-%d" % (role, board.max_pin)
    if num in board.forbidden_pins:
        return "GPIO%d is reserved (flash bus) and can never be used" % num
    if num in board.missing_pins:
        return "GPIO%d does not exist on this board" % num
    if num in used:
        return "GPIO%d is already used by '%s'" % (num, used[num])
    return None


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
    if cls is not None and (mode != "in" or not isinstance(cls, str) or " %s " % cls not in DEVICE_CLASSES):
        return "device_class is for inputs, one of:" + DEVICE_CLASSES.rstrip()
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


def _make_hw(spec, board):
    num, mode = spec["pin"], spec.get("mode", "out")
    if mode == "pwm":  # safe state: duty 0
        return board.pwm(num, spec.get("freq", limits.PWM_DEFAULT_FREQ), 0)
    if mode == "adc":
        return board.adc(num)
    return board.pin(num, mode, spec.get("pull"), spec.get("init", 0))


def setup(config_pins, board, log):
    """Build {name: NamedPin}; bad entries are logged and left out, nothing else touched."""
    pins, used = {}, {}
    for name in sorted(config_pins):
        spec = config_pins[name]
        err = _check(spec, board, used)
        if not err:
            try:
                hw = _make_hw(spec, board)
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
        used[num] = name
        level = _boot_level(spec, name)
        if level:
            pin._apply(level)
    return pins
