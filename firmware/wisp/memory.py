# Persistent key-value facts the agent remembers across reboots ("name: Ada", "plant_water_ml: 250"),
# capped in size, saved atomically through wisp.store, the freshest sent with each LLM request.
import json

from wisp import limits, store

STORE_NAME = "memory"


def _value_bytes(value):
    return len(value.encode()) if isinstance(value, str) else len(json.dumps(value))


def show(value):
    """A value as tools, the prompt and routines read it: text as is, else JSON (true, not True)."""
    return value if isinstance(value, str) else json.dumps(value)


def check_key(key):
    """An error text for a key that cannot be stored, else None."""
    if not isinstance(key, str) or not key.strip():
        return "a key must be a non-empty string"
    if len(key) > limits.MAX_FACT_KEY:
        return "key '%s...' is %d characters; the limit is %d" % (key[:12], len(key), limits.MAX_FACT_KEY)
    for ch in key:
        if ord(ch) < 32 or ord(ch) == 127:
            return "key %r holds a control character" % key
    return None


def check_value(value):
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "a value must be a finite number"  # JSON cannot hold NaN or infinity
    if not isinstance(value, (str, int, float, bool)):
        return "a value must be text, a number or true/false"
    n = _value_bytes(value)
    if n > limits.MAX_FACT_VALUE:
        return "value is %d bytes; the limit is %d" % (n, limits.MAX_FACT_VALUE)
    return None


def check_pairs(pairs):
    """Validate a whole list of [key, value] pairs (a saved or restored store); error text or None."""
    if not isinstance(pairs, list):
        return "facts must be a list of [key, value] pairs"
    seen, total = set(), 0
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            return "fact %r is not a [key, value] pair" % (pair,)
        err = check_key(pair[0]) or check_value(pair[1])
        if err:
            return "fact %r: %s" % (pair[0], err)
        if pair[0] in seen:
            return "fact %r appears twice" % pair[0]
        seen.add(pair[0])
        total += len(pair[0].encode()) + _value_bytes(pair[1])
    if total > limits.MAX_FACTS_BYTES:
        return "facts take %d bytes; the limit is %d" % (total, limits.MAX_FACTS_BYTES)
    return None


class Memory:
    def __init__(self, log=print):
        self.log = log
        self.keep = 0  # 1: a read reordered the facts, or loading dropped some (not saved yet), so
        # the device must not drop us (Device.rest): a reload would lose the order, or log again
        self._values = {}
        self._order = []  # keys, least recently set/used first: the prompt takes from the end
        doc = store.load(STORE_NAME, None, log)
        llm = doc.get("llm") if isinstance(doc, dict) else None
        self._llm = store.names(llm)  # keys the LLM wrote (wisp/confirm.py)
        pairs = doc.get("facts") if isinstance(doc, dict) else None
        if doc is not None:
            err = check_pairs(pairs)
            if err:  # hand-edited or from another version: keep what is valid, say what was dropped
                log("memory error: %s; loading the valid facts only" % err)
                store.set_aside(STORE_NAME, doc, log)
                self.keep = 1
                pairs = pairs if isinstance(pairs, list) else []
        for pair in pairs or ():
            if isinstance(pair, list) and len(pair) == 2 and not (check_key(pair[0]) or check_value(pair[1])):
                if self._room(pair[0], pair[1]) is None:
                    self._put(pair[0], pair[1])

    def _put(self, key, value):
        if key in self._values:
            self._order.remove(key)
        self._values[key] = value
        self._order.append(key)

    def used_bytes(self):
        return sum(len(k.encode()) + _value_bytes(v) for k, v in self._values.items())

    def _room(self, key, value):
        old = len(key.encode()) + _value_bytes(self._values[key]) if key in self._values else 0
        used = self.used_bytes() - old
        need = len(key.encode()) + _value_bytes(value)
        if used + need > limits.MAX_FACTS_BYTES:
            return "memory full: %d of %d bytes used, this fact needs %d; delete a fact first" % (
                used, limits.MAX_FACTS_BYTES, need)
        return None

    def _save(self, old):
        """Write the facts; when flash refuses, put back `old` (values, order, LLM keys) and raise
        ValueError. The LLM marks go back too: else a failed write by the owner would leave the
        LLM's value in place as the owner's."""
        try:
            store.save(STORE_NAME, {"v": 1, "facts": self.pairs(), "llm": self.llm_keys()})
            self.keep = 0  # what was reordered or dropped is on flash now
        except Exception as e:  # OSError (flash full), MemoryError
            self._values, self._order, self._llm = old  # keep RAM and flash in agreement
            raise ValueError("could not save to flash (%s)" % e)

    def set(self, key, value, llm=0):
        """Store a fact; raises ValueError with a readable reason when it cannot. llm: the LLM
        wrote it, so a routine step acting on it acts for the LLM."""
        err = check_key(key) or check_value(value) or self._room(key, value)
        if err:
            raise ValueError(err)
        old = dict(self._values), list(self._order), set(self._llm)
        self._put(key, value)
        (self._llm.add if llm else self._llm.discard)(key)
        self._save(old)

    def by_llm(self, key):
        return key in self._llm

    def get(self, key):
        """The value, or None. A read counts as use (prompt order) but is not saved: no flash wear."""
        if key not in self._values:
            return None
        if self._order[-1] != key:
            self._order.remove(key)
            self._order.append(key)
            self.keep = 1
        return self._values[key]

    def delete(self, key):
        if key not in self._values:
            return False
        old = dict(self._values), list(self._order), self._llm
        del self._values[key]
        self._order.remove(key)
        self._save(old)
        return True

    def items(self):
        """(key, value) pairs, most recently set or used first."""
        return [(k, self._values[k]) for k in reversed(self._order)]

    def pairs(self):
        """[key, value] lists, oldest first: the saved and exported form."""
        return [[k, self._values[k]] for k in self._order]

    def llm_keys(self):
        """The facts the LLM wrote (saved, and kept in backups)."""
        return [k for k in self._llm if k in self._values]

    def replace(self, pairs, llm=()):
        """Swap in a whole validated fact list (restore), llm: the keys the LLM wrote; raises
        ValueError, changing nothing, if invalid."""
        err = check_pairs(pairs)
        if err:
            raise ValueError(err)
        old = self._values, self._order, self._llm
        self._values, self._order, self._llm = {}, [], set(llm)
        for k, v in pairs:
            self._put(k, v)
        self._save(old)

    def for_prompt(self, max_bytes=limits.MAX_FACTS_PROMPT_BYTES):
        """'key: value' lines, freshest first, whose bytes (plus one separator each) fit max_bytes."""
        out, used = [], 0
        for k, v in self.items():
            line = "%s: %s" % (k, show(v))
            n = len(line.encode()) + 1
            if used + n <= max_bytes:  # a long fact that does not fit leaves room for shorter ones
                out.append(line)
                used += n
        return out
