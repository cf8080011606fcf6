# The fast path recognises simple named-pin requests, and nothing it does not fully understand.
from wisp import fastpath


class _Pin:  # the fast path reads only a pin's mode
    def __init__(self, mode):
        self.mode = mode


PINS = {"porch_light": _Pin("out"), "fan": _Pin("out"), "heater": _Pin("out"), "door": _Pin("in")}


def _check(text, expected):
    got = fastpath.parse(text, PINS)
    if got != expected:
        raise Exception("%r -> %r, expected %r" % (text, got, expected))


def test_commands_in_the_ways_people_say_them():
    _check("porch light on", ("set", "porch_light", 1))
    _check("Turn on the porch light", ("set", "porch_light", 1))
    _check("turn the porch light off.", ("set", "porch_light", 0))
    _check("please switch off the fan!", ("set", "fan", 0))
    _check("heater ON", ("set", "heater", 1))


def test_questions_read_the_pin():
    _check("is the heater on?", ("get", "heater", None))
    _check("Is the porch light off", ("get", "porch_light", None))
    _check("status of the door", ("get", "door", None))
    _check("what is the door", ("get", "door", None))


def test_anything_not_fully_understood_goes_to_the_llm():
    for text in ("turn on the porch light at sunset", "turn on the garage light", "fan", "switch the fan",
                 "turn the fan on and off", "door on", "is it cold outside?", "", "on", "what's the weather",
                 "turn on the porch light " + "very " * 10):
        _check(text, None)


def test_reply_text_for_a_person():
    if fastpath.say("porch_light", 1) != "porch light is on" or fastpath.say("fan", 0) != "fan is off":
        raise Exception("bad wording")
