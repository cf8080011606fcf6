# Named routines: tool steps the LLM composes once and the device runs offline forever. A step
# may bind its result to a name and carry a JSON condition on earlier results (never eval).
# Formats and the binding rule: docs/memory-and-routines.md. The checks made when a routine is
# defined live in wisp/routine_check.py, imported only when one is defined or restored.
import asyncio

from wisp import NAME_CHARS, limits, store, tools, unload
from wisp.pins import NamedPin

STORE_NAME = "routines"
_NUMBER_CHARS = "0123456789+-.eE"


def _number(word):
    if word and all(ch in _NUMBER_CHARS for ch in word):
        try:
            return int(word)
        except ValueError:
            try:
                return float(word)
            except ValueError:
                pass
    return None


def _field(text, pick):
    """The text after '<pick>=' up to the next ',' or ';' (None if absent)."""
    at = 0
    while True:
        at = text.find(pick + "=", at)
        if at < 0:
            return None
        if at == 0 or text[at - 1] not in NAME_CHARS:  # "temp=" must not match "max_temp="
            break
        at += 1
    text = text[at + len(pick) + 1:]
    for sep in ",;":
        if sep in text:
            text = text[:text.index(sep)]
    return text


def bind_value(text, pick=None):
    """What a result text binds (docs/memory-and-routines.md): the part after its last '=' (all of
    it if none), or after '<pick>=' up to ',' or ';'; a number if it starts with one ("21.5 C")."""
    if pick is None:
        text = text[text.rfind("=") + 1:]
    else:
        text = _field(text, pick)
        if text is None:
            raise ValueError("the result has no '%s='" % pick)
    text = text.strip()
    number = _number(text.split()[0]) if text else None
    return text if number is None else number


def _ref(v):
    """The bound name a "$name" argument refers to, else None ("$$..." is a literal "$...")."""
    if isinstance(v, str) and len(v) > 1 and v[0] == "$" and v[1] != "$":
        return v[1:]
    return None


def _literal(v):
    return v[1:] if isinstance(v, str) and v.startswith("$$") else v


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _holds(cond, bound):
    """Evaluate a checked condition. A comparison on a name with no value (skipped step) is false."""
    if isinstance(cond, dict):
        key, sub = list(cond.items())[0]
        if key == "not":
            return not _holds(sub, bound)
        if key == "all":
            return all(_holds(c, bound) for c in sub)
        return any(_holds(c, bound) for c in sub)
    left, op, right = cond
    left = left[1:] if left.startswith("$") else left
    ref = _ref(right)
    if left not in bound or (ref is not None and ref not in bound):
        return False
    a, b = bound[left], bound[ref] if ref is not None else _literal(right)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if not (_is_num(a) and _is_num(b)):
        raise ValueError("cannot test %r %s %r: both sides must be numbers" % (a, op, b))
    return a < b if op == "<" else a <= b if op == "<=" else a > b if op == ">" else a >= b


def _resolve(v, bound):
    ref = _ref(v)
    if ref is None:
        return _literal(v)
    if ref not in bound:
        raise ValueError("'$%s' has no value: the step that binds it was skipped or failed" % ref)
    return bound[ref]


def _summary(ran, skipped, failed, bound, order):
    text = "ok: %d step%s ran" % (ran, "" if ran == 1 else "s")
    if skipped:
        text += ", %d skipped" % skipped
    if failed:
        text += ", %d failed" % failed
    if bound:
        text += "; " + ", ".join("%s=%s" % (k, bound[k]) for k in order)
    return text


def _runnable(steps):
    if not isinstance(steps, list) or not steps:
        return False
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("tool"), str):
            return False
    return True


class Routines:
    def __init__(self, dev, log=print):
        self.dev, self.log = dev, log
        self.keep = 0  # runs in progress, +1 for good when loading dropped a routine (a reload would
        # log it again): the device does not drop us from the heap meanwhile (Device.rest)
        doc = store.load(STORE_NAME, None, log)
        saved = doc.get("routines") if isinstance(doc, dict) else None
        self._routines = {}
        llm = doc.get("llm") if isinstance(doc, dict) else None
        self._llm = set(llm) if isinstance(llm, list) else set()  # names the LLM defined (confirm.py)
        if not isinstance(saved, dict):
            if doc is not None:
                log("routines error: %s.json holds no routines object; starting empty" % STORE_NAME)
            return
        for name in saved:  # checked when defined; a hand-edited one that breaks fails its run
            if _runnable(saved[name]):
                self._routines[name] = saved[name]
            else:
                log("routines error: '%s' dropped: not a list of steps with a tool each" % name)
                self.keep = 1

    def _save(self, old):
        try:
            store.save(STORE_NAME, {"v": 1, "routines": self._routines,
                                    "llm": [n for n in self._llm if n in self._routines]})
        except OSError as e:
            self._routines = old  # keep RAM and flash in agreement
            raise ValueError("could not save to flash (%s)" % e)

    def define(self, name, steps, llm=0):
        """Store (or replace) a routine; raises ValueError with the reason if it is not valid.
        llm: the LLM defined it, so whoever runs it, its actions count as the LLM's."""
        from wisp import routine_check
        err = routine_check.check_routine(self.dev, name, steps)
        if not err and name not in self._routines and len(self._routines) >= limits.MAX_ROUTINES:
            err = "%d routines stored, the limit; delete one first" % limits.MAX_ROUTINES
        merged = dict(self._routines)
        merged[name] = steps
        err = err or routine_check.check_all(None, merged)  # nesting and targets, with this routine in place
        del routine_check
        unload("wisp.routine_check")  # one-shot: define time only
        if err:
            raise ValueError(err)
        old, self._routines = self._routines, merged
        old_llm = set(self._llm)
        (self._llm.add if llm else self._llm.discard)(name)
        try:
            self._save(old)
        except ValueError:
            self._llm = old_llm
            raise

    def replace(self, routines):
        """Swap in a whole set {name: steps} (restore); raises ValueError, changing nothing, if invalid."""
        from wisp import routine_check
        err = routine_check.check_all(self.dev, routines)
        del routine_check
        unload("wisp.routine_check")  # one-shot: restore time only
        if err:
            raise ValueError(err)
        old, self._routines = self._routines, dict(routines)
        self._save(old)

    def get(self, name):
        return self._routines.get(name)

    def list(self):
        return sorted(self._routines)

    def all(self):
        return dict(self._routines)

    def delete(self, name):
        if name not in self._routines:
            return False
        old = dict(self._routines)
        del self._routines[name]
        self._save(old)
        return True

    async def run(self, name, trigger="tool", llm=0):
        """Run a routine; one short summary line ("ok: ..." or "Error: ..."). Never raises.
        llm: the chain that runs it began with the LLM (tools.run)."""
        self.keep += 1
        try:
            summary = await self._run(name, 1, llm, NamedPin.changes)
        except Exception as e:  # a hand-edited store must not take the loop down
            summary = "Error: routine '%s' failed: %r" % (name, e)
        finally:
            self.keep -= 1
        if trigger != "tool":
            self.log("routine %s (%s): %s" % (name, trigger, summary))
        return summary

    async def _step(self, step, bound, depth, llm, tainted, first):
        """Run one step whose condition holds; the value it binds (None without "as"). Raises ValueError
        with the reason when it fails (a tool's "Error: ..." included). tainted: bound names whose
        value is a fact the LLM wrote; a step using one acts for the LLM."""
        args = {}
        for k, v in step.get("args", {}).items():
            args[k] = _resolve(v, bound)
            if not llm and _ref(v) in tainted:
                llm = 2
        tool = step["tool"]
        if tool == "routine_run":  # nested directly, so the depth and origin travel with the call
            result = tools.check(self.dev, tool, args)[1] or await self._run(args["name"], depth + 1, llm, first)
        else:
            result = await tools.run(self.dev, tool, args, llm)
        if tool == "memory_get" and "as" in step and self.dev.memory.by_llm(args.get("key")):
            tainted.add(step["as"])
        if result.startswith("Error"):
            raise ValueError(result[7:] if result.startswith("Error: ") else result)
        if "as" not in step:
            return None
        try:
            return bind_value(result, step.get("pick"))
        except ValueError as e:
            raise ValueError("%s in %r" % (e, result))

    async def _run(self, name, depth, llm, first):
        """first: NamedPin.changes when the outermost run began; the whole run may add MAX_RUN_SWITCHES."""
        steps = self._routines.get(name)
        if not llm and name in self._llm:
            llm = 2  # the LLM wrote it; who runs it cannot vouch for what it does
        if steps is None:
            return "Error: no routine '%s'; routines: %s" % (name, ", ".join(self.list()) or "none")
        if depth > limits.MAX_ROUTINE_DEPTH:
            return "Error: routines nested deeper than %d levels" % limits.MAX_ROUTINE_DEPTH
        bound, order, ran, skipped, failed, tainted = {}, [], 0, 0, 0, set()  # order: names as first bound
        for i, step in enumerate(steps):
            await asyncio.sleep_ms(0)  # one step at a time: MQTT, the scheduler and asks keep running
            if NamedPin.changes - first >= limits.MAX_RUN_SWITCHES:  # nested routines fan out: relay wear
                return "Error: routine '%s' stopped at step %d: %d pin changes in one run is the limit" % (
                    name, i + 1, limits.MAX_RUN_SWITCHES)
            try:
                if "if" in step and not _holds(step["if"], bound):
                    skipped += 1
                    continue
                ran += 1
                value = await self._step(step, bound, depth, llm, tainted, first)
            except ValueError as e:
                if step.get("continue") is True:
                    failed += 1
                    continue
                return "Error: routine '%s' stopped at step %d (%s): %s" % (name, i + 1, step["tool"], e)
            if "as" in step:
                if step["as"] not in bound:
                    order.append(step["as"])
                bound[step["as"]] = value
        return _summary(ran, skipped, failed, bound, order)
