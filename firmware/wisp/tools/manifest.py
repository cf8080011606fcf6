# The manifest the device publishes (retained on wisp/<id>/manifest): every tool of the registry
# with its description (kept here) and a JSON Schema of its parameters, the named pins, limits
# and a hash.
# One-shot: imported to build the manifest, then dropped (wisp.unload) so it holds no heap.
import binascii
import hashlib
import json

from micropython import const

from wisp import VERSION, limits, tools

_SLICE = const(96)  # characters of a description per piece of the published manifest (_body)

# What the LLM reads of each tool of the registry (wisp/tools/__init__.py TOOLS): its name, " | "
# and a description; an argument whose kind alone does not say enough gets an indented line after
# it: "  <arg> <description>". One string per line, not one text: loading the module then needs
# no single ~2.3 KB block, which a heap fragmented by the time of a reconnect may not have (the
# import failed so on the 32-bit model).
DESCRIPTIONS = (
    "gpio_write | Switch an output: 1 on, 0 off.",
    "gpio_read | Read a pin: 1 on/high, 0 off/low.",
    "gpio_toggle | Flip an output.",
    "gpio_pulse | Switch an output on for ms milliseconds, then off.",
    "pwm_set | Set a PWM output (dimmer, fan speed); freq in Hz.",
    "adc_read | Read an analog input: raw 0-4095 and volts.",
    "i2c_scan | List the addresses of devices on the I2C bus.",
    "i2c_read | Read n bytes from an I2C device, from register reg if given.",
    "i2c_write | Write bytes to an I2C device, to register reg if given.",
    "i2c_write_read | Write bytes, then read n bytes back without a stop in between.",
    "sensor_read | Read a sensor (temperature, humidity); chip = the board.",
    "system_info | Firmware, board, id, uptime, free heap, Wi-Fi signal, boot count.",
    "system_health | Is the device healthy: free heap, uptime, Wi-Fi signal, errors.",
    "system_reboot | Reboot the device, only when the user asks for it.",
    "  confirm the word reboot",
    "publish | Publish an MQTT message under this device's topics or an allowed topic.",
    "memory_set | Remember a fact across reboots (replaces key).",
    "memory_get | Recall a fact.",
    "memory_delete | Forget a remembered fact.",
    "memory_list | List remembered facts, most recent first.",
    ('routine_define | Save a routine the device runs offline, e.g. steps [{"tool": "gpio_read", "args": '
     '{"pin": "door"}, "as": "door"}, {"tool": "gpio_write", "args": {"pin": "fan", "value": 1}, "if": '
     '["door", "==", 1]}]. "as" binds the result text after its last "="; args may be "$door"; "if": '
     '[name, op, value] (== != < <= > >=), {"all": [..]}, {"any": [..]}, {"not": ..}; "continue": true '
     'goes on after an error.'),
    "routine_run | Run a saved routine now.",
    "routine_list | List saved routines.",
    "routine_delete | Delete a saved routine.",
    "schedule_add | Schedule a routine (runs offline) or a prompt (asks you then) on the device clock.",
    "  spec cron '0 7 * * 1-5', 'every 10m', 'at 2026-05-01T07:30' (local) or 'in 20m'",
    "  tz POSIX TZ for this job; default: the device's",
    "  missed after an outage: 'skip' (default) or 'once' = run once on return",
    "schedule_list | List scheduled jobs with their next local run time.",
    "schedule_remove | Remove a scheduled job.",
    "time_now | Local date, time, weekday, timezone.",
    "timezone_set | Set the device timezone.",
    "  tz POSIX TZ, sign west of UTC: 'CET-1CEST,M3.5.0,M10.5.0/3', 'EST5EDT,M3.2.0,M11.1.0'",
)


def describe(name):
    """(the tool's description, {arg: description} of its indented lines), or None."""
    head = name + " | "
    for i, line in enumerate(DESCRIPTIONS):
        if line.startswith(head):
            notes = {}
            for note in DESCRIPTIONS[i + 1:]:
                if not note.startswith("  "):
                    break
                arg, _, text = note[2:].partition(" ")
                notes[arg] = text
            return line[len(head):], notes
    return None


def schema(dev, name):
    """One tool as the manifest lists it: name, description and a JSON Schema of its parameters;
    None when this device cannot use it (a pin kind with no such pin: an empty enum nobody can
    fill, which some providers reject outright; I2C tools without a configured bus)."""
    _name, family, params = tools.find(name)
    if family == "i2c" and not dev.config.get("i2c"):  # no bus configured: ~1.6 KB of every request, unusable
        return None
    desc, notes = describe(name)
    props, required = {}, []
    for arg, kind, req in params:
        props[arg] = tools.schema_of(dev, kind)
        if props[arg].get("enum") == []:
            return None
        text = notes.get(arg)
        if text:
            props[arg]["description"] = text
        if req:
            required.append(arg)
    return {"name": name, "desc": desc,
            "params": {"type": "object", "properties": props, "required": required}}


def schemas(dev):
    """The schema of every tool this device offers (for the REPL and tests; build() makes them
    one at a time)."""
    return [s for s in (schema(dev, name) for name in tools.names()) if s is not None]


def _body(dev):
    """The manifest after its head fields: "pins", a pin per piece, then "tools", each tool's
    description in slices of _SLICE characters and each argument apart (schema() gives a tool).
    A piece is allocated whole, and after hours of running the heap is free in small holes: the
    longest tool (routine_define) was one 640-byte string, and a connect failed for want of it."""
    yield "{"
    sep = ""
    for n, p in dev.pins.items():
        # what people call a pin and what an input is reach the LLM too (the bridge's system prompt):
        # "the porch lamp" is porch_light, a door input reads 1 when open
        d = {"mode": p.mode}
        if p.aliases:
            d["aliases"] = p.aliases
        if p.device_class:
            d["device_class"] = p.device_class
        yield sep + json.dumps(n) + ": " + json.dumps(d)
        sep = ", "
    yield '}, "tools": ['
    sep = ""
    for name in tools.names():
        s = schema(dev, name)
        if s is None:
            continue
        params, desc = s["params"], s["desc"]
        yield sep + '{"name": "' + name + '", "desc": "'
        for i in range(0, len(desc), _SLICE):  # each slice escaped alone: escapes are per character
            yield json.dumps(desc[i:i + _SLICE])[1:-1]
        yield '", "params": {"type": "object", "required": ' + json.dumps(params["required"]) + ', "properties": {'
        sep = ""
        for arg in params["properties"]:
            yield sep + json.dumps(arg) + ": " + json.dumps(params["properties"][arg])
            sep = ", "
        yield "}}}"
        sep = ", "
    yield "]}"


def digest(dev):
    """The manifest's short hash over its pins and tools, computed a piece at a time."""
    h = hashlib.sha256()
    for piece in _body(dev):
        h.update(piece)
    return binascii.hexlify(h.digest()[:4]).decode()


def pieces(dev, short):
    """The manifest as JSON text in pieces, never whole in RAM: {<head fields>, "pins": {...},
    "tools": [<tool>, <tool>, ...]}. Deterministic, so the MQTT client can walk it once for the
    length and once to send it."""
    head = {"v": 1, "id": dev.id, "fw": VERSION, "hash": short,
            "limits": {"rounds": limits.MAX_ROUNDS, "calls": limits.MAX_CALLS_PER_ROUND}}
    yield json.dumps(head)[:-1] + ', "pins": '
    yield from _body(dev)
