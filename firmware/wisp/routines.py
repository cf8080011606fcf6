# Named routines: tool steps the LLM composes once and the device runs offline forever. A step
# may bind its result to a name and carry a JSON condition on earlier results (never eval).
# Formats and the binding rule: docs/memory-and-routines.md.
import asyncio
import json

from wisp import limits, store, tools

STORE_NAME = "routines"
STEP_KEYS = ("tool", "args", "as", "pick", "if", "continue")
OPS = ("==", "!=", "<", "<=", ">", ">=")
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_NUMBER_CHARS = "0123456789+-.eE"
COND_HELP = 'a condition is [name, op, value] (op: == != < <= > >=), {"all": [...]}, {"any": [...]} or {"not": ...}'


def check_name(name, what):
    if not isinstance(name, str) or not 1 <= len(name) <= limits.MAX_ROUTINE_NAME:
        return "%s must be a string of 1-%d characters" % (what, limits.MAX_ROUTINE_NAME)
    for ch in name:
        if ch not in NAME_CHARS:
            return "%s '%s' may hold only letters, digits, _ and -" % (what, name)
    return None


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


# ---- checks made when a routine is defined (or loaded, or restored) ----

def _check_cond(cond, bound, depth):
    if depth > limits.MAX_CONDITION_DEPTH:
        return "condition nested deeper than %d levels" % limits.MAX_CONDITION_DEPTH
    if isinstance(cond, list):
        if len(cond) != 3 or cond[1] not in OPS or not isinstance(cond[0], str):
            return COND_HELP
        left = cond[0][1:] if cond[0].startswith("$") else cond[0]
        if left not in bound:
            return "condition on '%s', which no earlier step binds with \"as\"" % left
        right = cond[2]
        if isinstance(right, (list, dict)):
            return "compare with a text, a number, true/false or a \"$name\""
        if _ref(right) is not None and _ref(right) not in bound:
            return "condition uses '%s', which no earlier step binds with \"as\"" % right
        return None
    if isinstance(cond, dict) and len(cond) == 1:
        key, sub = list(cond.items())[0]
        if key == "not":
            return _check_cond(sub, bound, depth + 1)
        if key in ("all", "any"):
            if not isinstance(sub, list) or not sub:
                return "\"%s\" needs a non-empty list of conditions" % key
            for c in sub:
                err = _check_cond(c, bound, depth + 1)
                if err:
                    return err
            return None
    return COND_HELP


def _check_args(dev, tool, args, bound):
    params = tool[3]
    for p in params:
        if p[2] and p[0] not in args:
            return "'%s' required for %s" % (p[0], tool[0])
    for arg in args:
        param = None
        for p in params:
            if p[0] == arg:
                param = p
        if param is None:
            return "unknown argument '%s' for %s" % (arg, tool[0])
        ref = _ref(args[arg])
        if ref is not None:
            if ref not in bound:
                return "%s: '$%s' is not bound by an earlier step (\"as\")" % (arg, ref)
        elif dev is not None:  # literal values are checked now, references when the step runs
            err = tools.KINDS[param[1]][1](dev, _literal(args[arg]))
            if err:
                return "'%s' %s" % (arg, err) if err.startswith("must") else err
    return None


def _check_step(dev, step, bound):
    if not isinstance(step, dict):
        return 'a step is an object {"tool": ..., "args": {...}}'
    for key in step:
        if key not in STEP_KEYS:
            return "unknown key '%s'; a step has %s" % (key, ", ".join(STEP_KEYS))
    tool = tools.find(step.get("tool")) if isinstance(step.get("tool"), str) else None
    if tool is None:
        return "unknown tool %r; tools: %s" % (step.get("tool"), ", ".join(t[0] for t in tools.TOOLS))
    args = step.get("args", {})
    if not isinstance(args, dict):
        return "args must be an object"
    err = _check_args(dev, tool, args, bound)
    if err is None and "if" in step:
        err = _check_cond(step["if"], bound, 1)
    if err is None and "continue" in step and step["continue"] is not True and step["continue"] is not False:
        err = "continue must be true or false"
    if err is None and "pick" in step:
        err = check_name(step["pick"], "\"pick\"") or (None if "as" in step else "\"pick\" needs an \"as\"")
    if err is None and "as" in step:
        err = check_name(step["as"], "\"as\"")
        bound.add(step["as"])
    return err


def _calls(steps):
    """Routines this one runs by literal name."""
    out = []
    for step in steps:
        if isinstance(step, dict) and step.get("tool") == "routine_run":
            target = (step.get("args") or {}).get("name")
            if isinstance(target, str) and _ref(target) is None:
                out.append(_literal(target))
    return out


def _depth(name, all_routines, chain):
    if name in chain:
        raise ValueError("routine '%s' would run itself: %s" % (name, " -> ".join(chain + [name])))
    deepest = 0
    for target in _calls(all_routines.get(name, ())):
        deepest = max(deepest, _depth(target, all_routines, chain + [name]))
    return deepest + 1


def check_routine(dev, name, steps, bound=None):
    """Error text for one routine, or None. dev=None skips checks of literal values (pins...)."""
    err = check_name(name, "routine name")
    if err:
        return err
    if not isinstance(steps, list) or not steps:
        return "steps must be a non-empty list of steps"
    if len(steps) > limits.MAX_ROUTINE_STEPS:
        return "%d steps; the limit is %d" % (len(steps), limits.MAX_ROUTINE_STEPS)
    try:
        size = len(json.dumps(steps))
    except Exception:
        return "steps must be plain JSON"
    if size > limits.MAX_ROUTINE_BYTES:
        return "steps take %d bytes; the limit is %d" % (size, limits.MAX_ROUTINE_BYTES)
    bound = set()
    for i, step in enumerate(steps):
        err = _check_step(dev, step, bound)
        if err:
            return "step %d: %s" % (i + 1, err)
    return None


def check_all(dev, routines):
    """Error text for a whole set of routines {name: steps} (count, each routine, nesting), or None."""
    if not isinstance(routines, dict):
        return "routines must be an object of name: steps"
    if len(routines) > limits.MAX_ROUTINES:
        return "%d routines; the limit is %d" % (len(routines), limits.MAX_ROUTINES)
    for name in routines:
        err = check_routine(dev, name, routines[name])
        if err:
            return "routine '%s': %s" % (name, err) if isinstance(name, str) else err
        for target in _calls(routines[name]):
            if target not in routines:
                return "routine '%s' runs '%s', which does not exist; define it first" % (name, target)
    try:
        for name in routines:
            if _depth(name, routines, []) > limits.MAX_ROUTINE_DEPTH:
                return "routine '%s' nests routines deeper than %d levels" % (name, limits.MAX_ROUTINE_DEPTH)
    except ValueError as e:
        return str(e)
    return None


# ---- running ----

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


class Routines:
    def __init__(self, dev, log=print):
        self.dev, self.log = dev, log
        doc = store.load(STORE_NAME, None, log)
        saved = doc.get("routines") if isinstance(doc, dict) else None
        self._routines = {}
        if not isinstance(saved, dict):
            if doc is not None:
                log("routines error: %s.json holds no routines object; starting empty" % STORE_NAME)
            return
        for name in saved:  # keep each sound routine; pins may have changed since, runs will say
            err = check_routine(None, name, saved[name])
            if err:
                log("routines error: '%s' dropped: %s" % (name, err))
            else:
                self._routines[name] = saved[name]

    def _save(self, old):
        try:
            store.save(STORE_NAME, {"v": 1, "routines": self._routines})
        except OSError as e:
            self._routines = old  # keep RAM and flash in agreement
            raise ValueError("could not save to flash (%s)" % e)

    def define(self, name, steps):
        """Store (or replace) a routine; raises ValueError with the reason if it is not valid."""
        err = check_routine(self.dev, name, steps)
        if err:
            raise ValueError(err)
        if name not in self._routines and len(self._routines) >= limits.MAX_ROUTINES:
            raise ValueError("%d routines stored, the limit; delete one first" % limits.MAX_ROUTINES)
        merged = dict(self._routines)
        merged[name] = steps
        err = check_all(None, merged)  # nesting and targets, with this routine in place
        if err:
            raise ValueError(err)
        old, self._routines = self._routines, merged
        self._save(old)

    def replace(self, routines):
        """Swap in a whole set {name: steps} (restore); raises ValueError, changing nothing, if invalid."""
        err = check_all(self.dev, routines)
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

    async def run(self, name, trigger="tool"):
        """Run a routine; one short summary line ("ok: ..." or "Error: ..."). Never raises."""
        try:
            summary = await self._run(name, 1)
        except Exception as e:  # a hand-edited store must not take the loop down
            summary = "Error: routine '%s' failed: %r" % (name, e)
        if trigger != "tool":
            self.log("routine %s (%s): %s" % (name, trigger, summary))
        return summary

    async def _step(self, step, bound, depth):
        """Run one step whose condition holds; the value it binds (None without "as"). Raises ValueError
        with the reason when it fails (a tool's "Error: ..." included)."""
        args = {}
        for k, v in step.get("args", {}).items():
            args[k] = _resolve(v, bound)
        tool = step["tool"]
        if tool == "routine_run":  # nested directly, so the depth travels with the call
            result = tools.check(self.dev, tool, args)[1] or await self._run(args["name"], depth + 1)
        else:
            result = await tools.run(self.dev, tool, args)
        if result.startswith("Error"):
            raise ValueError(result[7:] if result.startswith("Error: ") else result)
        if "as" not in step:
            return None
        try:
            return bind_value(result, step.get("pick"))
        except ValueError as e:
            raise ValueError("%s in %r" % (e, result))

    async def _run(self, name, depth):
        steps = self._routines.get(name)
        if steps is None:
            return "Error: no routine '%s'; routines: %s" % (name, ", ".join(self.list()) or "none")
        if depth > limits.MAX_ROUTINE_DEPTH:
            return "Error: routines nested deeper than %d levels" % limits.MAX_ROUTINE_DEPTH
        bound, order, ran, skipped, failed = {}, [], 0, 0, 0  # order: names as first bound
        for i, step in enumerate(steps):
            await asyncio.sleep_ms(0)  # one step at a time: MQTT, the scheduler and asks keep running
            try:
                if "if" in step and not _holds(step["if"], bound):
                    skipped += 1
                    continue
                ran += 1
                value = await self._step(step, bound, depth)
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
