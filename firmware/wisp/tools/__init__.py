# The one registry of every tool the device offers; the published manifest is generated from it.
#
# To add a tool:
#   1. Write `async def <name>(dev, args)` in wisp/tools/<family>.py. It gets checked arguments
#      and returns one short line of text for the LLM ("ok: ...", or "Error: ..." when it refuses).
#   2. Add a line to TOOLS below: name, family, then each parameter as arg:kind (arg?:kind when
#      optional; the kinds are checked in check_value), and a line with its description to
#      DESCRIPTIONS in wisp/tools/manifest.py.
#   3. Test it in tests/firmware/mp_test_tools.py.
#
# TOOLS is one string, not a table of tuples: a constant string stays in flash (ROMFS) or costs
# one copy, where ~90 tuples cost ~19 KB of heap; a line is parsed only when a call needs it.
# A family module is imported only when one of its tools is first called, so tools cost no
# heap until used. Nothing a caller sends can raise out of run(): every failure is a result text.
from wisp import limits, unload

# Families that stay loaded once used: gpio serves the fast path and routines, sensors keeps
# its read cache (DHTs must rest between reads). The others are unloaded after each call.
_RESIDENT = ("gpio", "sensors")

TOOLS = """
gpio_write gpio pin:pin_out value:bit
gpio_read gpio pin:pin
gpio_toggle gpio pin:pin_out
gpio_pulse gpio pin:pin_out ms:pulse_ms
pwm_set pwm pin:pin_pwm duty_percent:percent freq?:pwm_freq
adc_read adc pin:pin_adc
i2c_scan i2c
i2c_read i2c addr:i2c_addr n:i2c_len reg?:byte
i2c_write i2c addr:i2c_addr data:bytes reg?:byte
i2c_write_read i2c addr:i2c_addr data:bytes n:i2c_len
sensor_read sensors name:sensor
system_info system
system_health system
system_reboot system confirm:str
publish publish topic:str payload:str retain?:bool
memory_set memory key:str value:scalar
memory_get memory key:str
memory_delete memory key:str
memory_list memory
routine_define routine name:str steps:list
routine_run routine name:str
routine_list routine
routine_delete routine name:str
schedule_add schedule spec:str name?:str routine?:str prompt?:str tz?:str missed?:str
schedule_list schedule
schedule_remove schedule name:str
time_now clock
timezone_set clock tz:str
"""

_MODE_WORDS = {"out": "an output", "in": "an input", "pwm": "a PWM output", "adc": "an analog input"}


def names():
    """Every tool name, in registry order."""
    return [line.split(" ", 1)[0] for line in TOOLS.split("\n") if line]


def find(name):
    """(name, family, [(arg, kind, required), ...]) of a tool, or None."""
    at = TOOLS.find("\n" + name + " ") if isinstance(name, str) and name else -1
    if at < 0:
        return None
    words = TOOLS[at + 1:TOOLS.find("\n", at + 1)].split()
    if words[0] != name:  # "gpio_write gpio" must not pass for gpio_write
        return None
    params = []
    for word in words[2:]:
        arg, kind = word.split(":")
        params.append((arg.rstrip("?"), kind, arg[-1] != "?"))
    return words[0], words[1], params


def pin_mode(kind):
    """The pin mode a pin kind asks for ("pin_out" -> "out"; "pin" -> None = any pin), or False."""
    if kind == "pin":
        return None
    return kind[4:] if kind.startswith("pin_") else False


def int_range(kind):
    """(lowest, highest) of the integer kinds, else None."""
    return {"pulse_ms": (1, limits.MAX_PULSE_MS), "pwm_freq": (limits.PWM_FREQ_MIN, limits.PWM_FREQ_MAX),
            "i2c_addr": (0x08, 0x77), "i2c_len": (1, limits.I2C_MAX_BYTES), "byte": (0, 255)}.get(kind)


def pin_names(dev, mode=None):
    return [n for n in sorted(dev.pins) if mode is None or dev.pins[n].mode == mode]


def sensor_names(dev):
    configured = dev.config.get("sensors")
    return (sorted(configured) if isinstance(configured, dict) else []) + ["chip"]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_pin(dev, value, mode):
    if not isinstance(value, str):
        return "must be a pin name (string)"
    pin = dev.pins.get(value)
    if pin is None:
        return "pin '%s' is not configured; pins: %s" % (value, ", ".join(pin_names(dev, mode)) or "none")
    if mode and pin.mode != mode:
        return "pin '%s' is not %s" % (value, _MODE_WORDS[mode])
    return None


def _check_bytes(v):
    if not isinstance(v, list) or not 1 <= len(v) <= limits.I2C_MAX_BYTES:
        return "must be a list of 1-%d bytes" % limits.I2C_MAX_BYTES
    for b in v:
        if not _is_int(b) or not 0 <= b <= 255:
            return "bytes must be integers 0-255 (got %r)" % (b,)
    return None


def check_value(dev, kind, v):
    """Error text ("must ..." names no argument; pin texts name the pin) or None when v fits kind."""
    mode = pin_mode(kind)
    if mode is not False:
        return _check_pin(dev, v, mode)
    bounds = int_range(kind)
    if bounds:
        lo, hi = bounds
        return None if _is_int(v) and lo <= v <= hi else "must be an integer %d-%d" % (lo, hi)
    if kind == "str":
        return None if isinstance(v, str) else "must be a string"
    if kind == "bit":
        return None if v in (0, 1) or v is True or v is False else "must be 0 or 1"
    if kind == "percent":
        return None if (_is_int(v) or isinstance(v, float)) and 0 <= v <= 100 else "must be a number 0-100"
    if kind == "bytes":
        return _check_bytes(v)
    if kind == "sensor":
        known = sensor_names(dev)
        return None if v in known else "must be one of %s" % ", ".join(known)
    if kind == "bool":
        return None if v is True or v is False else "must be true or false"
    if kind == "list":
        return None if isinstance(v, list) else "must be a list"
    if kind == "scalar":
        return None if isinstance(v, (str, int, float, bool)) else "must be text, a number or true/false"
    return "has an unknown kind '%s' in the registry" % kind  # a typo in TOOLS: fail loudly


def check(dev, name, args):
    """Return (tool, error text or None)."""
    tool = find(name)
    if tool is None:
        return None, "Error: unknown tool '%s'; tools: %s" % (name, ", ".join(names()))
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return tool, "Error: arguments of %s must be an object" % name
    params = tool[2]
    for arg, kind, req in params:
        if arg not in args:
            if req:
                return tool, "Error: '%s' required for %s" % (arg, name)
            continue
        err = check_value(dev, kind, args[arg])
        if err:
            # "must ..." texts name the argument; pin texts already name the pin
            return tool, "Error: " + ("'%s' %s" % (arg, err) if err.startswith("must") else err)
    for arg in args:
        if not any(p[0] == arg for p in params):
            return tool, "Error: unknown argument '%s' for %s" % (arg, name)
    return tool, None


async def run(dev, name, args):
    """Validate and run one tool call; always returns a short result text."""
    if not isinstance(name, str):
        return "Error: tool name must be a string"
    tool, err = check(dev, name, args)
    if err:
        return err
    module = "wisp.tools." + tool[1]
    try:
        family = __import__(module, None, None, (name,))
        result = await getattr(family, name)(dev, args or {})
    except Exception as e:
        result = "Error: %s failed: %s" % (name, e)
    if tool[1] not in _RESIDENT:
        family = None
        unload(module)  # rare families give their heap back after each call; reloading is cheap
    result = str(result)
    if len(result) > limits.MAX_RESULT_TEXT:
        result = result[:limits.MAX_RESULT_TEXT - 3] + "..."
    return result
