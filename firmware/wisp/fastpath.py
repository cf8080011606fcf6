# The fast path: everyday requests over named pins ("could you turn the porch light on", "fan on
# and heater off", "lights off", "is the door open?") are understood here and run locally in
# milliseconds, with no network. Pure and table-driven: the pins' names, aliases and device
# classes are the only knowledge. A request is taken only when EVERY word is accounted for and it
# names exactly what to do; a word it does not know ("don't", "if", "at", "for", "why", a number)
# sends the request to the LLM, so negations, conditions and times never run here.
# Tables are constant tuples (no garbage per lookup on a small heap).

_MAX_WORDS = 24
# Opening frames that change nothing, stripped from the start (repeatedly).
_FRAMES = (("could", "you"), ("can", "you"), ("would", "you"), ("will", "you"), ("please",), ("kindly",),
           ("just",), ("hey",), ("ok",), ("okay",), ("i", "want", "you", "to"), ("i", "want"),
           ("i", "need", "you", "to"), ("i", "need"), ("i", "would", "like", "you", "to"), ("i", "would", "like"),
           ("id", "like", "you", "to"), ("id", "like"), ("go", "ahead", "and"), (",",))
_ASKING = ("could", "can", "would", "will")  # "could you turn it on?" is a command despite the "?"
# Words with one meaning each ("the fan" = "fan"). Any other word sends the request to the LLM.
_POLITE = ("please", "pls", "thanks", "thank", "you")
_FILLER = ("the", "my", "a", "an", "now", "to", "also", "both", "back") + _POLITE
_VERB = ("turn", "switch", "set", "put", "make", "power")  # need an on/off to say what to do
_ON = ("on", "start", "enable", "activate")
_OFF = ("off", "stop", "disable", "deactivate", "kill", "shut", "cut", "out")  # "lights out"
_TOGGLE = ("toggle", "flip")
_ALL = ("all", "every", "everything")
_ASK = ("is", "are", "what", "whats", "check", "status", "state", "how", "hows")  # a question starts so
_OUT_STATES = ("on", "off", "running", "going")  # what a question may ask of an output
_ASK_MORE = ("of", "or", "still", "doing")  # "is the fan still on", "what's the fan doing"
_OTHER = ("and", "up", "down", ",") + _ASK_MORE  # never a pin's short name
_LIGHTS = ("light", "lamp")  # "the lights" = every output whose name or alias says light or lamp


def _words(text):
    t = text.lower()
    for c in "-_/":  # "porch-light", "porch_light"
        t = t.replace(c, " ")
    out = []
    for w in t.replace(",", " , ").split():
        w = w.strip("?!.;:\"").replace("'", "").replace("\u2019", "")
        if w:
            out.append(w)
    return out


def _value(w, nxt):
    """(0, 1 or 2 = toggle, or None for a bare verb; words used), or None if not an on/off word."""
    if nxt == "down" and w in ("shut", "power"):
        return 0, 2  # "shut down", "power down"
    if nxt == "up" and w == "power":
        return 1, 2  # "power up" ("shut up" is not a way to say on)
    if w in _ON:
        return 1, 1
    if w in _OFF:
        return 0, 1
    if w in _TOGGLE:
        return 2, 1
    if w in _VERB:
        return None, 1
    return None


def names(pins):
    """What parse needs to know of the pins' names, built for each request (kept, it would be a
    long-lived island among the request's freed objects): ({first word: [(words, pin name, or ""
    when two pins share the name)]}, [(name, its words)]): names and aliases, and a name's last
    word when no other pin's names contain it ("light" for porch_light when it is the only light)."""
    keys, owner, named = {}, {}, []
    for name, pin in pins.items():
        for n in [name] + list(pin.aliases):
            ws = tuple(_words(n))
            if ws:
                keys[ws] = name if keys.get(ws, name) == name else ""
                named.append((name, ws))
                for w in ws:
                    owner[w] = name if owner.get(w, name) == name else ""
    for name, ws in named:
        w = ws[-1]
        if owner[w] == name and (w,) not in keys and not _known(w):
            keys[(w,)] = name
    index = {}
    for ws, name in keys.items():
        index.setdefault(ws[0], []).append((ws, name))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))  # longest name first: "porch light" before "porch"
    return index, named


def _known(w):
    return (w in _FILLER or w in _VERB or w in _ON or w in _OFF or w in _TOGGLE or w in _ALL
            or w in _ASK or w in _OTHER)


def _match(words, i, index):
    """(pin name or "", words used) for the longest pin name at words[i], or None."""
    entries = index.get(words[i], ())
    one = entries[0][1] if entries else None  # the pin, if all names starting so are one pin's
    for e in entries:
        if e[1] != one:
            one = None
    for ws, name in entries:
        n = len(ws)
        if i + n <= len(words):
            k = 1  # "porch lights": the plural of a name is the pin when no other pin's name starts so
            while k < n and (words[i + k] == ws[k] or k == n - 1 and one and words[i + k] == ws[k] + "s"):
                k += 1
            if k == n:
                return name, n
    return None


def _group(word, pins, named):
    """Outputs a plural names ("lights", "fans"), or None."""
    if len(word) < 4 or word[-1] != "s":
        return None
    stem = word[:-1]
    stems = _LIGHTS if stem in _LIGHTS else (stem,)
    found = []
    for name, ws in named:
        if pins[name].mode == "out" and name not in found:
            for w in ws:
                if w in stems:
                    found.append(name)
                    break
    return found or None


def _unframe(words):
    """Strip opening frames; (rest, True when one was "could/can/would/will you")."""
    asking, i, again = False, 0, True
    while again and i < len(words):
        again = False
        for f in _FRAMES:
            n = len(f)
            k = 0
            while k < n and i + k < len(words) and words[i + k] == f[k]:
                k += 1
            if k == n:
                asking = asking or f[0] in _ASKING
                i += n
                again = True
                break
    return words[i:], asking


def terms(pin):
    """(word for ON, word for OFF): an input's device class says ("open", "closed"), else on/off
    (NamedPin.terms, set at boot by wisp/pin_setup.py from its table of classes)."""
    return pin.terms


def parse(text, pins, known=None):
    """pins: {name: NamedPin} (mode, aliases, device_class, confirm are read); known: names(pins),
    built here when not given. Returns a list of
    (kind, name, value, said): ("set", name, 0|1|2 (toggle), the words the user called it by) or
    ("get", name, None, said); or None when the request is not fully understood."""
    words = _words(text)
    if not words or len(words) > _MAX_WORDS:
        return None
    words, asking = _unframe(words)
    if not words:
        return None
    question = words[0] in _ASK or "status" in words or "state" in words  # "door status"
    if "?" in text and not question and not asking:
        return None  # "fan on?": a question or a command? Let the LLM ask
    clauses = _clauses(words, pins, known or names(pins), question)
    return None if clauses is None else _actions(clauses, pins, question)


def _clauses(words, pins, known, question):
    """The request's clauses, [targets, value, state words asked about] each, or None when a word
    is not understood. Apart from parse() so that neither needs one large block of bytecode: the
    first ask loads this module into whatever heap is left."""
    index, named = known
    clauses, cur = [], [[], None, []]
    i, sep, polite = 0, None, False
    while i < len(words):
        w = words[i]
        found = _match(words, i, index)
        if found:
            if not found[0]:
                return None  # two pins answer to this name
            cur[0].append((found[0], " ".join(words[i:i + found[1]]), 1))
            i += found[1]
            continue
        i += 1
        v = None if question else _value(w, words[i] if i < len(words) else None)
        polite = w in _POLITE or (polite and w in _FILLER)
        if w == "and" or w == ",":
            sep = w
            if cur[0] or cur[1] is not None or cur[2]:  # "fan on, and heater off": one break
                clauses.append(cur)
                cur = [[], None, []]
        elif w in _ALL:
            cur[0].append(None)
        elif w in _FILLER or (question and (w in _ASK or w in _ASK_MORE)):
            pass
        elif v:
            i += v[1] - 1
            if v[0] is not None:
                if cur[1] is not None and cur[1] != v[0]:
                    return None  # "on ... off"
                cur[1] = v[0]
        elif _group(w, pins, named):
            cur[0].append(_group(w, pins, named))
        elif question:
            cur[2].append(w)  # a state asked about: checked against the pin below
        else:
            return None  # a word we do not know: let the LLM handle it
    if cur[0] or cur[1] is not None or cur[2] or (sep != "," and not polite):
        clauses.append(cur)  # else "fan on, please" or "... and thank you": nothing more asked
    return clauses


def _actions(clauses, pins, question):
    values = [c[1] for c in clauses if c[1] is not None]
    if not question and len(values) != len(clauses):
        if len(values) != 1:
            return None  # "fan on and heater and lamp off": which goes with which?
        for c in clauses:
            c[1] = values[0]  # "turn on the fan and the heater"
    out, seen = [], []
    for targets, value, states in clauses:
        group = _target(targets, pins)
        if group is None:
            return None
        for name, said, named in group:
            pin = pins[name]
            if name in seen:
                return None  # "fan on and fan off"
            seen.append(name)
            if question:
                ok = _OUT_STATES
                if pin.mode == "in":
                    ok = terms(pin)
                    ok += ("shut",) if ok[1] == "closed" else ()  # "is the door shut?"
                if pin.mode not in ("in", "out"):
                    return None
                for s in states:
                    if s not in ok and s not in ("on", "off"):
                        return None  # "is the door wet"
                out.append(("get", name, None, said))
            else:
                if pin.mode != "out" or (value and pin.confirm and not named):
                    return None  # a group word never switches on a pin that needs the user's yes
                out.append(("set", name, value, said))
    return out


def _target(targets, pins):
    """One clause's pins as [(name, said, named)]: one pin, one plural, or all outputs; else None."""
    if len(targets) == 1 and isinstance(targets[0], tuple):
        return targets
    groups = [t for t in targets if isinstance(t, list)]
    if len(groups) > 1 or len(groups) + targets.count(None) != len(targets) or not targets:
        return None  # two pins without "and", "all the fan", or nothing named
    members = groups[0] if groups else [n for n in pins if pins[n].mode == "out"]
    return [(n, n.replace("_", " "), 0) for n in members] or None


def say(actions, pins):
    """The reply for a person, in their words and the pins' terms: 'porch lamp is on', 'door is
    open', or 'fan on, heater off'."""
    parts = []
    for a in actions:
        pin = pins[a[1]]
        parts.append((a[3], terms(pin)[0 if pin.read() else 1].replace("_", " ")))
    if len(parts) == 1:
        return "%s is %s" % parts[0]
    return ", ".join("%s %s" % p for p in parts)
