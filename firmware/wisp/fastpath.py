# The fast path: simple requests over named pins ("porch light on", "turn off the fan",
# "is the heater on?") are recognised here and run locally in milliseconds, with no network.
# Pure function of the text and the pin names. A request is only taken when EVERY word is
# understood; anything else ("turn on the porch light at sunset") goes to the LLM.

_FILLER = ("please", "the", "my", "a", "now")
_COMMAND = ("turn", "switch", "set", "put")
_QUESTION = ("is", "are", "what", "whats", "what's", "status", "state", "of", "check")
_ON = ("on", "enable", "start")
_OFF = ("off", "disable", "stop")
_STRIP = "?!.,;:'\""


def _words(text):
    out = []
    for w in text.lower().split():
        w = w.strip(_STRIP)
        if w:
            out.append(w)
    return out


def _find_pin(words, pin_names):
    """Longest pin name whose words appear contiguously; returns (name, start, length)."""
    best = None
    for name in pin_names:
        parts = name.lower().replace("-", "_").split("_")
        n = len(parts)
        for i in range(len(words) - n + 1):
            if words[i:i + n] == parts and (best is None or n > best[2]):
                best = (name, i, n)
    return best


def parse(text, pins):
    """pins: {name: NamedPin} (only names and modes are read). Returns ("set", name, 0|1),
    ("get", name, None) or None."""
    words = _words(text)
    if not words or len(words) > 10:
        return None
    found = _find_pin(words, pins)
    if found is None:
        return None
    name, start, n = found
    rest = words[:start] + words[start + n:]
    question = rest[0] in _QUESTION if rest else False
    value = None
    for w in rest:
        if w in _ON or w in _OFF:
            if value is not None:
                return None  # "on ... off": ambiguous
            value = 1 if w in _ON else 0
        elif w not in _FILLER and w not in _COMMAND and w not in _QUESTION:
            return None  # a word we do not understand: let the LLM handle it
    if question:
        return ("get", name, None)
    if value is None or pins[name].mode != "out":
        return None
    return ("set", name, value)


def say(name, value):
    """The reply for a person: 'porch light is on'."""
    return "%s is %s" % (name.replace("_", " "), "on" if value else "off")
