# Named pins from config (`porch_light: {pin: 26, mode: out}`): the LLM sees names, never numbers.
# The safety policy lives here, whoever asks: pins that would crash or brick the board are
# refused at boot, outputs start in their safe state (or, by choice, on or at their last level:
# `restore`, never for confirm or timed pins), writes obey a rate limit and a maximum on-time
# with automatic off.
import asyncio
import time

from wisp import limits

LAST_FILE = "pins_last"           # store name of the levels of `restore: last` outputs
WARM_FILE = "pins_warm"           # store name of the levels kept over a reset for memory (keep_levels)
BY_LLM = " by llm"                # "<pin> by llm" in both: 1 when the LLM set the level kept (no pin name has a space)

def _int_in(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


class NamedPin:
    """level: 0/1 for out and in, duty percent 0-100 for pwm, raw 0-4095 for adc. Carries its
    config entry as checked at boot (setup), so no one re-reads config dicts later."""

    terms = ("on", "off")  # words for its levels; an input with a device class gets its own at setup

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
        self.device_class = spec.get("device_class")  # an input's kind (pin_setup.DEVICE_CLASSES), or None
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

    def write(self, level, notify=None, off_after_ms=0, llm=0):
        """Set the level (0/1, or duty percent for pwm) under the policy. Returns an error text,
        or None when done. off_after_ms > 0 schedules the off (a pulse). notify: async fn(name),
        kept and awaited when the pin later turns off by itself. llm: the level is the LLM's
        (a routine reading it acts for the LLM), kept with it over a reset."""
        err = self.refusal(level)
        if err:
            return err
        self.by_llm = llm
        if notify:
            self.notify = notify
        was_on = self.read()
        if level != was_on:
            self._apply(level)
        elif self.restore == "last":
            _remember(self, level, llm)  # the same level, now set by someone else
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

    by_llm = None  # the last write's chain began with the LLM (wisp/tools/gpio.py, routine_run.py)
    bright_llm = None  # pwm: the LLM set `bright` (what Home Assistant's "ON" brings back, wisp/ha_set.py)
    changes = 0  # level changes of all pins: a routine run counts its own (wisp/routines.py)

    def _apply(self, level):
        if self.mode == "pwm":
            self.duty = level
            if level:
                self.bright, self.bright_llm = level, self.by_llm
            self.hw.duty_u16(int(level * 65535 // 100))
        else:
            self.hw.value(1 if level else 0)
        self._changed = time.ticks_ms()
        NamedPin.changes += 1
        if self.restore == "last":
            _remember(self, level, self.by_llm)

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


def keep_levels(pins):
    """Before a reset the firmware makes for a fresh heap (wisp/mqtt.py on_starved): save every
    output's level, so the boot after it sets them back (pin_setup, hal/early.py) and a broker
    restart does not switch the lights off. An output on a timer (max on-time, pulse) is saved
    off: its deadline does not survive the reset. Raises OSError (flash full), MemoryError."""
    from wisp import store
    kept = {}
    for p in pins.values():
        if p.mode in ("out", "pwm"):
            kept[p.name] = 0 if p._off_task else p.read()
            kept[p.name + BY_LLM] = 1 if p.by_llm else 0
    store.save(WARM_FILE, kept)


def _remember(pin, level, llm):
    # only `restore: last` outputs pay for this: one small file rewritten per change
    from wisp import store
    name, last = pin.name, store.load_dict(LAST_FILE)
    mark = 1 if llm else 0
    if last.get(name) != level or last.get(name + BY_LLM, 0) != mark:
        last[name], last[name + BY_LLM] = level, mark
        try:
            store.save(LAST_FILE, last)
        except OSError as e:  # flash full: the pin has switched (and a pulse must still end), only
            # the level after a reboot is lost; the write is no error
            pin.log("error: %s=%s not kept for after a reboot (restore: last): %s" % (name, level, e))


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


def setup(config_pins, board, log):
    """Build {name: NamedPin}; bad entries are logged and left out, nothing else touched. The
    checks live in wisp/pin_setup.py, loaded for this call only."""
    from wisp import pin_setup, unload
    try:
        return pin_setup.setup(config_pins, board, log)
    finally:
        del pin_setup
        unload("wisp.pin_setup")
