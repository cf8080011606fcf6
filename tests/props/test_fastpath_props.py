"""The fast path over generated requests: a well-formed request over a pin configuration is taken
with exactly the actions it asks for, and the same request with a negation, a time, a duration, a
condition or a "why" put anywhere in it is never taken (it goes to the LLM). Checked under CPython
with hypothesis, and the same cases in one batch on the real MicroPython unix port."""
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.props.firmware import collect, load, run_batch

fastpath = load("fastpath")
pin_setup = load("pin_setup")

PROPS = settings(max_examples=300, deadline=None)
BATCH = 300

CONFIGS = [
    {"porch_light": {"mode": "out", "aliases": ["porch lamp"]}, "fan": {"mode": "out"},
     "heater": {"mode": "out", "confirm": True}, "door": {"mode": "in", "device_class": "door"}},
    {"kitchen_light": {"mode": "out", "aliases": ["ceiling light"]}, "desk_lamp": {"mode": "out"},
     "extractor_fan": {"mode": "out", "aliases": ["hood"]}, "window": {"mode": "in", "device_class": "window"},
     "leak": {"mode": "in", "device_class": "moisture", "aliases": ["sink sensor"]}},
    {"garage_light": {"mode": "out"}, "heater_relay": {"mode": "out", "aliases": ["heater"]},
     "motion": {"mode": "in", "device_class": "motion"}, "dimmer": {"mode": "pwm"}},
]
FRAMES = ["", "please ", "could you ", "can you ", "i want you to ", "hey, "]
ON = ["turn on the {n}", "turn the {n} on", "{n} on", "switch on the {n}", "start the {n}", "power up the {n}"]
OFF = ["turn off the {n}", "turn the {n} off", "{n} off", "switch the {n} off", "kill the {n}", "shut down the {n}"]
ASK = ["is the {n} {w}", "is the {n} {w}?", "{n} status", "what's the status of the {n}", "check the {n}"]
TAILS = ["", " please", " now", ", thanks"]
# Whatever else the request says, these make it something the device may not decide alone.
POISON = ["don't", "do not", "not", "never", "no", "at 7pm", "at sunset", "in 5 minutes", "for 10 minutes",
          "for an hour", "tomorrow", "tonight", "later", "until 8", "after sunset", "before noon", "every day",
          "every morning", "if the door is open", "when it gets dark", "unless it rains", "why", "why is",
          "again in 10 minutes", "at 06:30", "in an hour", "each night", "then"]


class Pin:
    """The attributes of wisp.pins.NamedPin the fast path reads, with the words pin setup gives it."""

    def __init__(self, spec):
        self.mode = spec["mode"]
        self.aliases = spec.get("aliases", [])
        self.device_class = spec.get("device_class")
        self.confirm = spec.get("confirm", False)
        self.terms = pin_setup.class_terms(self.device_class) if self.device_class else ("on", "off")


PINS = [{n: Pin(s) for n, s in c.items()} for c in CONFIGS]


@st.composite
def requests(draw):
    """(config index, text, expected actions as sorted "kind:name[:value]" strings)."""
    ci = draw(st.integers(0, len(CONFIGS) - 1))
    cfg = CONFIGS[ci]
    name = draw(st.sampled_from(sorted(n for n, s in cfg.items() if s["mode"] in ("out", "in"))))
    said = draw(st.sampled_from([name.replace("_", " ")] + cfg[name].get("aliases", [])))
    if cfg[name]["mode"] == "in":
        on_word = fastpath.terms(PINS[ci][name])[draw(st.integers(0, 1))]
        text, want = draw(st.sampled_from(ASK)).format(n=said, w=on_word), f"get:{name}"
    else:
        v = draw(st.integers(0, 1))
        text, want = draw(st.sampled_from(ON if v else OFF)).format(n=said), f"set:{name}:{v}"
    frame = draw(st.sampled_from(FRAMES))
    if text.endswith("?") and frame.startswith("hey"):
        frame = ""
    return ci, frame + text + ("" if text.endswith("?") else draw(st.sampled_from(TAILS))), [want]


@st.composite
def poisoned(draw):
    """A request with a negation, time, duration, condition or why put in at any word boundary."""
    ci, text, _want = draw(requests())
    words = text.split()
    at = draw(st.integers(0, len(words)))
    words[at:at] = [draw(st.sampled_from(POISON))]
    return ci, " ".join(words)


def taken(ci, text):
    got = fastpath.parse(text, PINS[ci])
    return None if got is None else sorted("%s:%s%s" % (k, n, "" if v is None else ":%d" % v) for k, n, v, _s in got)


@PROPS
@given(requests())
def test_a_well_formed_request_is_taken_with_exactly_its_actions(case):
    ci, text, want = case
    assert taken(ci, text) == want, text


@PROPS
@given(poisoned())
def test_a_request_with_a_negation_time_or_condition_is_never_taken(case):
    ci, text = case
    assert taken(ci, text) is None, text


SOUP = ["turn", "switch", "on", "off", "the", "and", ",", "?", "is", "all", "lights", "fans", "toggle", "shut", "down",
        "up", "please", "could", "you", "status", "open", "wet", "porch", "light", "lamp", "fan", "heater", "door",
        "kitchen", "hood", "everything", "not", "at", "7pm", "if", "why", "or", "of", "power", "kill", "heaters"]


@PROPS
@given(st.integers(0, len(CONFIGS) - 1), st.lists(st.sampled_from(SOUP) | st.text(max_size=6), max_size=7))
def test_any_soup_of_words_is_refused_or_taken_safely(ci, words):
    """Never raises; whatever it takes switches only outputs of this config and reads only its pins, and
    a request with a negation, a time or a condition in it is never taken."""
    text = " ".join(words)
    got = fastpath.parse(text, PINS[ci])
    if got is None:
        return
    for kind, name, value, _said in got:
        spec = CONFIGS[ci][name]
        assert (kind == "set" and spec["mode"] == "out" and value in (0, 1, 2)) or \
            (kind == "get" and value is None and spec["mode"] in ("in", "out")), (text, got)
    assert not {"not", "at", "7pm", "if", "why"} & set(fastpath._words(text)), (text, got)


DEVICE_RUN = """
import json
from wisp import fastpath, pin_setup

class Pin:
    def __init__(self, spec):
        self.mode = spec["mode"]
        self.aliases = spec.get("aliases", [])
        self.device_class = spec.get("device_class")
        self.confirm = spec.get("confirm", False)
        self.terms = pin_setup.class_terms(self.device_class) if self.device_class else ("on", "off")

PINS = None
for line in open("cases.json"):
    c = json.loads(line)
    if PINS is None:
        PINS = [dict((n, Pin(s)) for n, s in cfg.items()) for cfg in c]
        continue
    got = fastpath.parse(c[1], PINS[c[0]])
    print(json.dumps(None if got is None else sorted(["%s:%s%s" % (k, n, "" if v is None else ":%d" % v)
                                                     for k, n, v, _s in got])))
"""


def test_the_device_takes_the_same_requests_and_refuses_the_same(tmp_path):
    cfg = settings(max_examples=BATCH, deadline=None, database=None)
    good = collect(requests(), BATCH, cfg)
    bad = collect(poisoned(), BATCH, cfg)
    cases = [[c[0], c[1]] for c in good] + [[c[0], c[1]] for c in bad]
    out = run_batch(tmp_path, DEVICE_RUN, [CONFIGS] + cases)
    assert out[:len(good)] == [c[2] for c in good]
    assert out[len(good):] == [None] * len(bad)
