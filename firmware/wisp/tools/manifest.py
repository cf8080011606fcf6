# The manifest the device publishes (retained on wisp/<id>/manifest): every tool of the registry
# with its description and a JSON Schema of its parameters, the named pins, limits and a hash.
# One-shot: imported to build the manifest, then dropped (wisp.unload) so it holds no heap.
import binascii
import hashlib
import json

from wisp import VERSION, limits, tools

# One line per tool: "<name> <description>", and "<name>.<arg> <description>" for a parameter
# whose kind alone does not say enough. Every tool in tools.TOOLS needs its line here.
DESCRIPTIONS = """
gpio_write Switch a named output pin: value 1 = on, 0 = off.
gpio_read Read a named pin: 1 = on/high, 0 = off/low.
gpio_toggle Flip a named output pin: on becomes off, off becomes on.
gpio_pulse Switch a named output on for ms milliseconds, then off by itself.
pwm_set Set a named PWM output (dimmer, fan speed): duty 0-100 %, optional frequency.
pwm_set.freq Hz
adc_read Read a named analog input: raw 0-4095 and volts.
i2c_scan List the addresses of devices on the I2C bus.
i2c_read Read n bytes from an I2C device, from register reg if given.
i2c_write Write bytes to an I2C device, to register reg if given.
i2c_write_read Write bytes, then read n bytes back without a stop in between.
sensor_read Read a named sensor (temperature, humidity); 'chip' is the board itself.
system_info Firmware, board, id, uptime, free heap, Wi-Fi signal, boot count.
system_health Is the device healthy: free heap, uptime, Wi-Fi signal, errors.
system_reboot Reboot the device, only when the user asks for it.
system_reboot.confirm the word reboot
publish Publish an MQTT message under this device's topics or an allowed topic.
memory_set Remember a fact across reboots (replaces the old value of key).
memory_set.value text, number or true/false
memory_get Recall a remembered fact: key=value.
memory_delete Forget a remembered fact.
memory_list List remembered facts, most recent first.
routine_define Save a routine the device runs offline, e.g. steps [{"tool": "gpio_read", "args": {"pin": "door"}, "as": "door"}, {"tool": "gpio_write", "args": {"pin": "fan", "value": 1}, "if": ["door", "==", 1]}]. "as" binds the result text after its last "="; args may be "$door"; "if": [name, op, value] (== != < <= > >=), {"all": [..]}, {"any": [..]}, {"not": ..}; "continue": true goes on after an error.
routine_run Run a saved routine now.
routine_list List saved routines.
routine_delete Delete a saved routine.
schedule_add Schedule a routine (runs offline) or a prompt (asks you then) on the device clock.
schedule_add.spec cron '0 7 * * 1-5', 'every 10m', 'at 2026-05-01T07:30' (local) or 'in 20m'
schedule_add.tz POSIX TZ for this job; default: the device's
schedule_add.missed after an outage: 'skip' (default) or 'once' = run once on return
schedule_list List scheduled jobs with their next local run time.
schedule_remove Remove a scheduled job.
time_now Local date, time, weekday and timezone of the device.
timezone_set Set the device timezone.
timezone_set.tz POSIX TZ, sign west of UTC: 'CET-1CEST,M3.5.0,M10.5.0/3', 'EST5EDT,M3.2.0,M11.1.0'
"""


def describe(key):
    """The text after "<key> " on its line of DESCRIPTIONS, or None."""
    at = DESCRIPTIONS.find("\n" + key + " ")
    if at < 0:
        return None
    start = at + len(key) + 2
    return DESCRIPTIONS[start:DESCRIPTIONS.find("\n", start)]


def _schema(dev, kind):
    """The JSON Schema of one parameter kind (the checks are tools.check_value)."""
    mode = tools.pin_mode(kind)
    if mode is not False:
        return {"type": "string", "enum": tools.pin_names(dev, mode)}
    bounds = tools.int_range(kind)
    if bounds:
        return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}
    if kind == "bit":
        return {"type": "integer", "enum": [0, 1]}
    if kind == "percent":
        return {"type": "number", "minimum": 0, "maximum": 100}
    if kind == "bytes":
        return {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255},
                "maxItems": limits.I2C_MAX_BYTES}
    if kind == "sensor":
        return {"type": "string", "enum": tools.sensor_names(dev)}
    if kind == "scalar":
        return {"type": ["string", "number", "boolean"]}
    return {"type": {"str": "string", "bool": "boolean", "list": "array"}[kind]}


def schema(dev, name):
    """One tool as the manifest lists it: name, description and a JSON Schema of its parameters."""
    _name, _family, params = tools.find(name)
    props, required = {}, []
    for arg, kind, req in params:
        props[arg] = _schema(dev, kind)
        text = describe(name + "." + arg)
        if text:
            props[arg]["description"] = text
        if req:
            required.append(arg)
    return {"name": name, "desc": describe(name),
            "params": {"type": "object", "properties": props, "required": required}}


def schemas(dev):
    """Every tool's schema (for the REPL and tests; build() makes them one at a time)."""
    return [schema(dev, name) for name in tools.names()]


def _tool_pieces(dev):
    first = True
    for name in tools.names():
        if not first:
            yield ","
        first = False
        yield json.dumps(schema(dev, name))


def _pins(dev):
    return json.dumps({n: {"mode": p.mode} for n, p in dev.pins.items()})


def digest(dev):
    """The manifest's short hash over its tools and pins, computed one tool at a time."""
    h = hashlib.sha256()
    for piece in _tool_pieces(dev):
        if piece != ",":
            h.update(piece)
    h.update(_pins(dev))
    return binascii.hexlify(h.digest()[:4]).decode()


def pieces(dev, short):
    """The manifest as JSON text, yielded one tool at a time so it is never whole in RAM:
    {<head fields>, "pins": {...}, "tools": [<tool>, <tool>, ...]}. Deterministic, so the MQTT
    client can walk it once for the length and once to send it."""
    head = {"v": 1, "id": dev.id, "fw": VERSION, "hash": short,
            "limits": {"rounds": limits.MAX_ROUNDS, "calls": limits.MAX_CALLS_PER_ROUND}}
    yield json.dumps(head)[:-1] + ', "pins": ' + _pins(dev) + ', "tools": ['
    for piece in _tool_pieces(dev):
        yield piece
    yield "]}"
