# The tool registry: validation errors the LLM can read, GPIO on named pins, manifest schemas.
import json

from fakeboard import make_device, manifest, run

from wisp import tools


def test_gpio_write_sets_pin_and_publishes_retained_state():
    dev = make_device()
    result = run(tools.run(dev, "gpio_write", {"pin": "porch_light", "value": 1}))
    if result != "ok: porch_light=1":
        raise Exception(result)
    if dev.board.levels[5] != 1:
        raise Exception("pin 5 not high")
    if dev.link.sent[-1] != ("wisp/t1/state/porch_light", "ON", True, 1):
        raise Exception(dev.link.sent)


def test_gpio_write_accepts_json_booleans():
    dev = make_device()
    run(tools.run(dev, "gpio_write", {"pin": "fan", "value": True}))
    if dev.board.levels[18] != 1:
        raise Exception("fan not on")


def test_gpio_read_reports_input_level():
    dev = make_device()
    if run(tools.run(dev, "gpio_read", {"pin": "door"})) != "door=1":  # pulled up
        raise Exception("door not read as 1")


def _expect_error(dev, name, args, *fragments):
    result = run(tools.run(dev, name, args))
    if not result.startswith("Error:"):
        raise Exception("expected an error, got %r" % result)
    for frag in fragments:
        if frag not in result:
            raise Exception("%r not in %r" % (frag, result))
    return result


def test_invalid_calls_return_readable_errors_and_touch_nothing():
    dev = make_device()
    _expect_error(dev, "gpio_write", {"pin": "garage", "value": 1}, "'garage' is not configured", "porch_light")
    _expect_error(dev, "gpio_write", {"pin": "door", "value": 1}, "'door' is not an output")
    _expect_error(dev, "gpio_write", {"pin": "fan", "value": 7}, "'value' must be 0 or 1")
    _expect_error(dev, "gpio_write", {"pin": "fan", "value": "on"}, "0 or 1")
    _expect_error(dev, "gpio_write", {"pin": 5, "value": 1}, "pin name")
    _expect_error(dev, "gpio_write", {"value": 1}, "'pin' required")
    _expect_error(dev, "gpio_write", {"pin": "fan", "value": 1, "extra": 2}, "unknown argument 'extra'")
    _expect_error(dev, "gpio_write", [1, 2], "must be an object")
    _expect_error(dev, "launch_rocket", {}, "unknown tool 'launch_rocket'", "gpio_write")
    _expect_error(dev, None, {}, "tool name")
    if dev.board.levels[5] or dev.board.levels[18]:
        raise Exception("an invalid call moved a pin")
    if dev.link.sent:
        raise Exception("an invalid call published %r" % dev.link.sent)


def test_manifest_lists_tools_with_pin_names_not_numbers():
    dev = make_device()
    m = manifest(dev)
    names = [t["name"] for t in m["tools"]]
    if names[:2] != ["gpio_write", "gpio_read"] or len(set(names)) != len(names):
        raise Exception(names)
    pin_schema = m["tools"][0]["params"]["properties"]["pin"]
    if pin_schema["enum"] != ["fan", "porch_light"]:
        raise Exception(pin_schema)
    if m["pins"]["door"] != {"mode": "in"} or len(m["hash"]) != 8:
        raise Exception(m)


def test_announced_manifest_is_the_same_text_as_built_and_carries_the_request_hash():
    dev = make_device()
    run(dev.announce())
    sent = dev.link.on("wisp/t1/manifest")
    if len(sent) != 1 or sent[0] != manifest(dev) or sent[0]["hash"] != dev.manifest_hash:
        raise Exception(sent)


def test_manifest_goes_out_in_pieces_no_longer_than_a_line():
    # each piece is one allocation: a connect after hours of running, in a heap free in small
    # holes, failed for want of one 640-byte block (routine_define's JSON, sent whole)
    dev = make_device()
    run(dev.announce())
    pieces = dev.link.pieces["wisp/t1/manifest"]
    longest = max(pieces, key=len)
    if len(longest) > 200:
        raise Exception("a %d-character piece: %s" % (len(longest), longest))
    tools_out = {t["name"]: t for t in json.loads("".join(pieces))["tools"]}
    from wisp.tools import manifest
    if len(tools_out["routine_define"]["desc"]) < 300 or tools_out["routine_define"]["desc"] != \
            manifest.describe("routine_define")[0]:
        raise Exception(tools_out["routine_define"])


def test_manifest_slices_a_description_anywhere_and_it_reads_back_whole():
    # quotes, backslashes and non-ASCII at every slice boundary: each slice is escaped alone
    from wisp.tools import manifest
    dev = make_device()
    saved = manifest.DESCRIPTIONS
    text = "".join('Say "%d" \\ to the caf\u00e9 ' % i for i in range(40))
    manifest.DESCRIPTIONS = ("gpio_write | " + text, "  pin " + text[:90]) + saved[1:]
    try:
        pieces = list(manifest.pieces(dev, "x"))
        tool = json.loads("".join(pieces))["tools"][0]
    finally:
        manifest.DESCRIPTIONS = saved
    if tool["desc"] != text or tool["params"]["properties"]["pin"]["description"] != text[:90]:
        raise Exception(tool)
    if tool["params"]["properties"]["pin"]["enum"] != ["fan", "porch_light"]:
        raise Exception(tool)
    if max(len(p) for p in pieces) > 200:
        raise Exception(max(pieces, key=len))


def test_every_tool_has_a_description_and_only_known_kinds():
    # a tool without its text would publish "desc": null, and the bridge refuses the whole manifest
    dev = make_device()
    names = tools.names()
    if len(names) < 20 or len(set(names)) != len(names):
        raise Exception(names)
    for name in names:
        tool = tools.find(name)
        if tool is None or tool[0] != name:
            raise Exception("%s: line does not parse: %r" % (name, tool))
        from wisp.tools import manifest
        if manifest.describe(name) is None:
            raise Exception("%s: no description in wisp/tools/manifest.py" % name)
        desc, notes = manifest.describe(name)
        if len(desc) < 10 or not desc.endswith("."):
            raise Exception("%s: description %r" % (name, desc))
        args = [p[0] for p in tool[2]]
        for arg in notes:
            if arg not in args or not notes[arg]:
                raise Exception("%s: note for unknown argument %r" % (name, arg))
        for arg, kind, _req in tool[2]:
            if tools.schema_of(dev, kind) is None:
                raise Exception("%s.%s: unknown kind %r" % (name, arg, kind))
        if not hasattr(__import__("wisp.tools." + tool[1], None, None, (name,)), name):
            raise Exception("%s: no function in wisp/tools/%s.py" % (name, tool[1]))
    from wisp.tools import manifest
    described = [line.split(" | ")[0] for line in manifest.DESCRIPTIONS if line[0] != " "]
    if described != names:  # a renamed or removed tool must not leave its text behind
        raise Exception("descriptions %r, registry %r" % (described, names))


def test_each_kind_checks_what_its_schema_publishes():
    dev = make_device()
    for kind, good, bad, text in (
            ("str", "x", 1, "must be a string"), ("bool", False, 0, "must be true or false"),
            ("steps", [], {}, "must be a list"), ("scalar", 1.5, None, "must be text, a number or true/false"),
            ("bit", True, 2, "must be 0 or 1"), ("percent", 99.5, 101, "must be a number 0-100"),
            ("byte", 255, 256, "must be an integer 0-255"), ("byte", 0, True, "must be an integer 0-255"),
            ("sensor", "chip", "x", "must be one of chip"), ("bytes", [1], [], "must be a list of 1-")):
        if tools.check_value(dev, kind, good) is not None:
            raise Exception("%s refused %r" % (kind, good))
        err = tools.check_value(dev, kind, bad)
        if err is None or not err.startswith(text):
            raise Exception("%s: %r -> %r" % (kind, bad, err))
    if "unknown kind" not in tools.check_value(dev, "colour", "red"):
        raise Exception("an unknown kind must fail loudly")
