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
)


def _pin_names(dev, mode=None):
    return [n for n in sorted(dev.pins) if mode is None or dev.pins[n].mode == mode]


def _check_pin(dev, value, mode):
    if not isinstance(value, str):
        return "must be a pin name (string)"
    pin = dev.pins.get(value)
    if pin is None:
        return "pin '%s' is not configured; pins: %s" % (value, ", ".join(_pin_names(dev, mode)) or "none")
    if mode and pin.mode != mode:
        return "pin '%s' is not an output" % value if mode == "out" else "pin '%s' is not an input" % value
    return None


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
    "pin_in": (lambda dev: {"type": "string", "enum": _pin_names(dev, "in")},
               lambda dev, v: _check_pin(dev, v, "in")),
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
