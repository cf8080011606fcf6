# The one registry of every tool the device offers; the published manifest is generated from it.
#
# To add a tool:
#   1. Write `async def <name>(dev, args)` in wisp/tools/<family>.py. It gets checked arguments
#      and returns one short line of text for the LLM ("ok: ...", or "Error: ..." when it refuses).
#   2. Add its line to TOOLS below: name, family, each parameter as arg:kind (arg?:kind when
#      optional; the kinds are those of schema_of).
#   3. Add its description, which the LLM reads, to DESCRIPTIONS in wisp/tools/manifest.py.
#   4. Test it in tests/firmware/mp_test_tools.py (which also checks every tool has a
#      description and only known kinds).
#
# TOOLS is one string, not a table of tuples: a constant string stays in flash (ROMFS) or costs
# one copy, where ~90 tuples cost ~19 KB of heap; a line is parsed only when a call needs it.
# The descriptions are in the manifest's module: only the manifest needs them, and from .mpy
# files their ~2.5 KB would sit in the heap beside every call.
# A family module is imported only when one of its tools is first called, so tools cost no
# heap until used. Nothing a caller sends can raise out of run(): every failure is a result text.
from wisp import limits, unload

# Families that stay loaded once used: gpio serves the fast path and routines (the device drops
# it after each request, Device.rest), sensors keeps its read cache (DHTs must rest between
# reads). The others are unloaded after each call.
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
memory_list memory skip?:index
routine_define routine name:str steps:steps
routine_run routine name:str
routine_list routine skip?:index
routine_delete routine name:str
schedule_add schedule spec:str name?:str routine?:str prompt?:str tz?:str missed?:str
schedule_list schedule skip?:index
schedule_remove schedule name:str
time_now clock
timezone_set clock tz:str
"""

_MODE_WORDS = {"out": "an output", "in": "an input", "pwm": "a PWM output", "adc": "an analog input"}


def names():
    """Every tool name, in registry order."""
    return [line.split(" ", 1)[0] for line in TOOLS.split("\n") if line]


def _line(name):
    """(start, end) of the tool's line in TOOLS, or None."""
    at = TOOLS.find("\n" + name + " ") if isinstance(name, str) and name else -1
    if at < 0:
        return None
    return at + 1, TOOLS.find("\n", at + 1)


def find(name):
    """(name, family, [(arg, kind, required), ...]) of a tool, or None."""
    span = _line(name)
    if span is None:
        return None
    words = TOOLS[span[0]:span[1]].split()
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


def pin_names(dev, mode=None):
    return [n for n in sorted(dev.pins) if mode is None or dev.pins[n].mode == mode]


def sensor_names(dev):
    configured = dev.config.get("sensors")
    return (sorted(configured) if isinstance(configured, dict) else []) + ["chip"]


def _int_range(lo, hi):
    return {"type": "integer", "minimum": lo, "maximum": hi}


def schema_of(dev, kind):
    """The JSON Schema of an argument kind, or None for an unknown kind: the one table of kinds.
    The manifest publishes it and check_value derives the device's check from it, so what the
    LLM is told and what the device accepts cannot drift apart. Built per call, not held."""
    mode = pin_mode(kind)
    if mode is not False:
        return {"type": "string", "enum": pin_names(dev, mode)}
    if kind == "sensor":
        return {"type": "string", "enum": sensor_names(dev)}
    if kind == "bytes":  # the check also wants at least one byte (check_value)
        return {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255},
                "maxItems": limits.I2C_MAX_BYTES}
    # Provider rules shape these (docs/bridge.md, providers): an array says what its items are
    # (OpenAI rejects one without), and no list-valued "type" (Gemini's subset rejects it).
    return {"str": {"type": "string"}, "bool": {"type": "boolean"},
            "steps": {"type": "array", "items": {"type": "object"}},
            "scalar": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
            "bit": {"type": "integer", "enum": [0, 1]},  # true and false pass too: they equal 1 and 0
            "percent": {"type": "number", "minimum": 0, "maximum": 100},
            "pulse_ms": _int_range(1, limits.MAX_PULSE_MS),
            "pwm_freq": _int_range(limits.PWM_FREQ_MIN, limits.PWM_FREQ_MAX),
            "i2c_addr": _int_range(0x08, 0x77), "i2c_len": _int_range(1, limits.I2C_MAX_BYTES),
            "byte": _int_range(0, 255), "index": _int_range(0, limits.MAX_FACTS_BYTES)}.get(kind)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _fits(json_type, v):
    if json_type == "string":
        return isinstance(v, str)
    if json_type == "integer":
        return _is_int(v)
    if json_type == "number":
        return _is_int(v) or isinstance(v, float)
    if json_type == "boolean":
        return v is True or v is False
    if json_type == "array":
        return isinstance(v, list)
    return any(_fits(t, v) for t in json_type)  # a list of types


# what a value of each JSON type must be, as the error text says it
_TYPE_WORDS = {"string": "a string", "boolean": "true or false", "array": "a list", "integer": "an integer",
               "number": "a number"}


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
    """Error text ("must ..." names no argument; pin texts name the pin) or None when v fits the
    kind's JSON Schema (schema_of)."""
    mode = pin_mode(kind)
    if mode is not False:  # names the pin and lists the right ones
        return _check_pin(dev, v, mode)
    if kind == "bytes":  # says which byte is wrong
        return _check_bytes(v)
    s = schema_of(dev, kind)
    if s is None:
        return "has an unknown kind '%s' in the registry" % kind  # a typo in TOOLS: fail loudly
    t = s["type"] if "type" in s else [alt["type"] for alt in s["anyOf"]]
    enum, lo = s.get("enum"), s.get("minimum")
    if enum is not None:
        if v in enum:
            return None
        return "must be " + (" or ".join(str(e) for e in enum) if t == "integer" else "one of " + ", ".join(enum))
    if _fits(t, v) and (lo is None or lo <= v <= s["maximum"]):
        return None
    if isinstance(t, list):
        return "must be text, a number or true/false"
    return "must be " + _TYPE_WORDS[t] + ("" if lo is None else " %d-%d" % (lo, s["maximum"]))


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


async def run(dev, name, args, llm=0):
    """Validate and run one tool call; always returns a short result text. llm: the call's chain
    started with the LLM (1: in an ask the user can still answer, 2: with no one to ask, e.g. its
    schedule). It rides down as args["_llm"], which no caller can send (check refuses unknown
    arguments), to the tools that write confirm pins or store actions (docs/security.md)."""
    if not isinstance(name, str):
        return "Error: tool name must be a string"
    tool, err = check(dev, name, args)
    if err:
        return err
    if llm:
        args = dict(args or ())  # a copy; args may be left out (None), as check allows
        args["_llm"] = llm
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


def page(head, items, skip, show):
    """A listing as one result, which run() cuts at MAX_RESULT_TEXT: head (first page only), the
    items from `skip` on that fit, and "; more: skip=N" when some are left, so a model or the
    bridge's listings can ask for the next page and every item can be seen."""
    out = "" if skip else head
    room = limits.MAX_RESULT_TEXT - 18  # "; more: skip=4096"
    for n in range(skip, len(items)):
        text = show(items[n])
        if n > skip:
            if len(out) + len(text) > room - 2:
                return out + "; more: skip=%d" % n
            out += "; "
        out += text
        if len(out) > room:  # one item longer than a page: cut, so the way to the next stays
            out = out[:room - 3] + "..."
    return out or "none past skip=%d" % skip
