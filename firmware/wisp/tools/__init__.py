# The one registry of every tool the device offers; the published manifest is generated from it.
#
# To add a tool:
#   1. Write `def <name>(dev, args)` in wisp/tools/<family>.py. It gets checked arguments and
#      returns one short line of text for the LLM ("ok: ...", or "Error: ..." when it refuses).
#   2. Add a line to TOOLS below: (name, family, description, params). Each param is
#      (arg name, kind, required) or (arg name, kind, required, short description); the
#      kinds are in KINDS.
#   3. Test it in tests/firmware/mp_test_tools.py.
#
# A family module is imported only when one of its tools is first called, so tools cost no
# heap until used. Nothing a caller sends can raise out of run(): every failure is a result text.
from wisp import limits

TOOLS = (
    ("gpio_write", "gpio", "Switch a named output pin: value 1 = on, 0 = off.",
     (("pin", "pin_out", True), ("value", "bit", True))),
    ("gpio_read", "gpio", "Read a named pin: 1 = on/high, 0 = off/low.",
     (("pin", "pin", True),)),
    ("gpio_toggle", "gpio", "Flip a named output pin: on becomes off, off becomes on.",
     (("pin", "pin_out", True),)),
    ("gpio_pulse", "gpio", "Switch a named output on for ms milliseconds, then off by itself.",
     (("pin", "pin_out", True), ("ms", "pulse_ms", True))),
    ("pwm_set", "pwm", "Set a named PWM output (dimmer, fan speed): duty 0-100 %, optional frequency.",
     (("pin", "pin_pwm", True), ("duty_percent", "percent", True), ("freq", "pwm_freq", False, "Hz"))),
    ("adc_read", "adc", "Read a named analog input: raw 0-4095 and volts.",
     (("pin", "pin_adc", True),)),
    ("i2c_scan", "i2c", "List the addresses of devices on the I2C bus.", ()),
    ("i2c_read", "i2c", "Read n bytes from an I2C device, from register reg if given.",
     (("addr", "i2c_addr", True), ("n", "i2c_len", True), ("reg", "byte", False))),
    ("i2c_write", "i2c", "Write bytes to an I2C device, to register reg if given.",
     (("addr", "i2c_addr", True), ("data", "bytes", True), ("reg", "byte", False))),
    ("i2c_write_read", "i2c", "Write bytes, then read n bytes back without a stop in between.",
     (("addr", "i2c_addr", True), ("data", "bytes", True), ("n", "i2c_len", True))),
    ("sensor_read", "sensors", "Read a named sensor (temperature, humidity); 'chip' is the board itself.",
     (("name", "sensor", True),)),
    ("system_info", "system", "Firmware, board, id, uptime, free heap, Wi-Fi signal, boot count.", ()),
    ("system_health", "system", "Is the device healthy: free heap, uptime, Wi-Fi signal, errors.", ()),
    ("system_reboot", "system", "Reboot the device, only when the user asks for it.",
     (("confirm", "str", True, "the word reboot"),)),
    ("publish", "publish", "Publish an MQTT message under this device's topics or an allowed topic.",
     (("topic", "str", True), ("payload", "str", True), ("retain", "bool", False))),
    ("memory_set", "memory", "Remember a fact across reboots (replaces the old value of key).",
     (("key", "str", True), ("value", "scalar", True, "text, number or true/false"))),
    ("memory_get", "memory", "Recall a remembered fact: key=value.", (("key", "str", True),)),
    ("memory_delete", "memory", "Forget a remembered fact.", (("key", "str", True),)),
    ("memory_list", "memory", "List remembered facts, most recent first.", ()),
    ("routine_define", "routine", 'Save a routine the device runs offline, e.g. steps [{"tool": "gpio_read", '
     '"args": {"pin": "door"}, "as": "door"}, {"tool": "gpio_write", "args": {"pin": "fan", "value": 1}, '
     '"if": ["door", "==", 1]}]. "as" binds the result text after its last "="; args may be "$door"; '
     '"if": [name, op, value] (== != < <= > >=), {"all": [..]}, {"any": [..]}, {"not": ..}; "continue": true '
     'goes on after an error.', (("name", "str", True), ("steps", "list", True))),
    ("routine_run", "routine", "Run a saved routine now.", (("name", "str", True),)),
    ("routine_list", "routine", "List saved routines.", ()),
    ("routine_delete", "routine", "Delete a saved routine.", (("name", "str", True),)),
    ("schedule_add", "schedule", "Schedule a routine (runs offline) or a prompt (asks you then) on the device clock.",
     (("spec", "str", True, "cron '0 7 * * 1-5', 'every 10m', 'at 2026-05-01T07:30' (local) or 'in 20m'"),
      ("name", "str", False), ("routine", "str", False), ("prompt", "str", False),
      ("tz", "str", False, "POSIX TZ for this job; default: the device's"),
      ("missed", "str", False, "after an outage: 'skip' (default) or 'once' = run once on return"))),
    ("schedule_list", "schedule", "List scheduled jobs with their next local run time.", ()),
    ("schedule_remove", "schedule", "Remove a scheduled job.", (("name", "str", True),)),
    ("time_now", "clock", "Local date, time, weekday and timezone of the device.", ()),
    ("timezone_set", "clock", "Set the device timezone.",
     (("tz", "str", True, "POSIX TZ, sign west of UTC: 'CET-1CEST,M3.5.0,M10.5.0/3', 'EST5EDT,M3.2.0,M11.1.0'"),)),
)


_MODE_WORDS = {"out": "an output", "in": "an input", "pwm": "a PWM output", "adc": "an analog input"}


def _pin_names(dev, mode=None):
    return [n for n in sorted(dev.pins) if mode is None or dev.pins[n].mode == mode]


def _check_pin(dev, value, mode):
    if not isinstance(value, str):
        return "must be a pin name (string)"
    pin = dev.pins.get(value)
    if pin is None:
        return "pin '%s' is not configured; pins: %s" % (value, ", ".join(_pin_names(dev, mode)) or "none")
    if mode and pin.mode != mode:
        return "pin '%s' is not %s" % (value, _MODE_WORDS[mode])
    return None


def _pin_kind(mode):
    return (lambda dev: {"type": "string", "enum": _pin_names(dev, mode)},
            lambda dev, v: _check_pin(dev, v, mode))


def _int_kind(lo, hi):
    return (lambda dev: {"type": "integer", "minimum": lo, "maximum": hi},
            lambda dev, v: None if _is_int(v) and lo <= v <= hi else "must be an integer %d-%d" % (lo, hi))


def _check_bytes(dev, v):
    if not isinstance(v, list) or not 1 <= len(v) <= limits.I2C_MAX_BYTES:
        return "must be a list of 1-%d bytes" % limits.I2C_MAX_BYTES
    for b in v:
        if not _is_int(b) or not 0 <= b <= 255:
            return "bytes must be integers 0-255 (got %r)" % (b,)
    return None


def _sensor_names(dev):
    configured = dev.config.get("sensors")
    return (sorted(configured) if isinstance(configured, dict) else []) + ["chip"]


def _check_bit(dev, value):
    if value in (0, 1) or value is True or value is False:
        return None
    return "must be 0 or 1"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _type_check(ok, what):
    return lambda dev, v: None if ok(v) else "must be " + what


# kind -> (JSON schema for the manifest, checker returning an error text or None)
KINDS = {
    "pin_out": (lambda dev: {"type": "string", "enum": _pin_names(dev, "out")},
                lambda dev, v: _check_pin(dev, v, "out")),
    "pin": (lambda dev: {"type": "string", "enum": _pin_names(dev)},
            lambda dev, v: _check_pin(dev, v, None)),
    "pin_in": _pin_kind("in"),
    "pin_pwm": _pin_kind("pwm"),
    "pin_adc": _pin_kind("adc"),
    "pulse_ms": _int_kind(1, limits.MAX_PULSE_MS),
    "pwm_freq": _int_kind(limits.PWM_FREQ_MIN, limits.PWM_FREQ_MAX),
    "percent": (lambda dev: {"type": "number", "minimum": 0, "maximum": 100},
                lambda dev, v: None if (_is_int(v) or isinstance(v, float)) and 0 <= v <= 100
                else "must be a number 0-100"),
    "i2c_addr": _int_kind(0x08, 0x77),
    "i2c_len": _int_kind(1, limits.I2C_MAX_BYTES),
    "byte": _int_kind(0, 255),
    "bytes": (lambda dev: {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255},
                           "maxItems": limits.I2C_MAX_BYTES}, _check_bytes),
    "sensor": (lambda dev: {"type": "string", "enum": _sensor_names(dev)},
               lambda dev, v: None if v in _sensor_names(dev) else "must be one of %s" % ", ".join(_sensor_names(dev))),
    "bit": (lambda dev: {"type": "integer", "enum": [0, 1]}, _check_bit),
    "str": (lambda dev: {"type": "string"}, _type_check(lambda v: isinstance(v, str), "a string")),
    "int": (lambda dev: {"type": "integer"}, _type_check(_is_int, "an integer")),
    "num": (lambda dev: {"type": "number"},
            _type_check(lambda v: _is_int(v) or isinstance(v, float), "a number")),
    "bool": (lambda dev: {"type": "boolean"}, _type_check(lambda v: v is True or v is False, "true or false")),
    "list": (lambda dev: {"type": "array"}, _type_check(lambda v: isinstance(v, list), "a list")),
    "obj": (lambda dev: {"type": "object"}, _type_check(lambda v: isinstance(v, dict), "an object")),
    "scalar": (lambda dev: {"type": ["string", "number", "boolean"]},
               _type_check(lambda v: isinstance(v, (str, int, float, bool)), "text, a number or true/false")),
}


def find(name):
    for tool in TOOLS:
        if tool[0] == name:
            return tool
    return None


def schemas(dev):
    """The manifest's tool list: name, description and a JSON Schema of the parameters."""
    out = []
    for name, _family, desc, params in TOOLS:
        props, required = {}, []
        for param in params:
            arg, kind, req = param[0], param[1], param[2]
            props[arg] = KINDS[kind][0](dev)
            if len(param) > 3:
                props[arg]["description"] = param[3]
            if req:
                required.append(arg)
        out.append({"name": name, "desc": desc,
                    "params": {"type": "object", "properties": props, "required": required}})
    return out


def check(dev, name, args):
    """Return (tool, error text or None)."""
    tool = find(name)
    if tool is None:
        return None, "Error: unknown tool '%s'; tools: %s" % (name, ", ".join(t[0] for t in TOOLS))
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return tool, "Error: arguments of %s must be an object" % name
    params = tool[3]
    for param in params:
        arg, kind, req = param[0], param[1], param[2]
        if arg not in args:
            if req:
                return tool, "Error: '%s' required for %s" % (arg, name)
            continue
        err = KINDS[kind][1](dev, args[arg])
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
    try:
        family = __import__("wisp.tools." + tool[1], None, None, (name,))
        result = await getattr(family, name)(dev, args or {})
    except Exception as e:
        result = "Error: %s failed: %s" % (name, e)
    result = str(result)
    if len(result) > limits.MAX_RESULT_TEXT:
        result = result[:limits.MAX_RESULT_TEXT - 3] + "..."
    return result
