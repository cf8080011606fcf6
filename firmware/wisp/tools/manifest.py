# The manifest the device publishes (retained on wisp/<id>/manifest): every tool of the registry
# with its description and a JSON Schema of its parameters, the named pins, limits and a hash.
# One-shot: imported to build the manifest, then dropped (wisp.unload) so it holds no heap.
import binascii
import hashlib
import json

from wisp import VERSION, limits, tools


def schema(dev, name):
    """One tool as the manifest lists it: name, description and a JSON Schema of its parameters;
    None when this device cannot use it (a pin kind with no such pin: an empty enum nobody can
    fill, which some providers reject outright; I2C tools without a configured bus)."""
    _name, family, params = tools.find(name)
    if family == "i2c" and not dev.config.get("i2c"):  # no bus configured: ~1.6 KB of every request, unusable
        return None
    desc, notes = tools.describe(name)
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


def _tool_pieces(dev):
    first = True
    for name in tools.names():
        s = schema(dev, name)
        if s is None:
            continue
        if not first:
            yield ","
        first = False
        yield json.dumps(s)


def _pins(dev):
    out = {}
    for n, p in dev.pins.items():
        # what people call a pin and what an input is reach the LLM too (the bridge's system prompt):
        # "the porch lamp" is porch_light, a door input reads 1 when open
        d = out[n] = {"mode": p.mode}
        if p.aliases:
            d["aliases"] = p.aliases
        if p.device_class:
            d["device_class"] = p.device_class
    return json.dumps(out)


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
    yield from _tool_pieces(dev)
    yield "]}"
