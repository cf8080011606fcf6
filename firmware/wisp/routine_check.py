# The checks a routine passes when it is defined or restored, so that it fails at define time
# with a reason the LLM can read rather than later, offline. Kept apart from wisp/routines.py
# so a device that only runs routines does not hold this code in its heap.
import json

from wisp import NAME_CHARS, limits, store, tools
from wisp.routines import _literal, _ref

STEP_KEYS = ("tool", "args", "as", "pick", "if", "continue")
OPS = ("==", "!=", "<", "<=", ">", ">=")
COND_HELP = 'a condition is [name, op, value] (op: == != < <= > >=), {"all": [...]}, {"any": [...]} or {"not": ...}'


def check_name(name, what):
    if not isinstance(name, str) or not 1 <= len(name) <= limits.MAX_ROUTINE_NAME:
        return "%s must be a string of 1-%d characters" % (what, limits.MAX_ROUTINE_NAME)
    for ch in name:
        if ch not in NAME_CHARS:
            return "%s '%s' may hold only letters, digits, _ and -" % (what, name)
    return None


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
    params = tool[2]
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
            err = tools.check_value(dev, param[1], _literal(args[arg]))
            if err:
                return "'%s' %s" % (arg, err) if err.startswith("must") else err
    return None


def _check_step(dev, step, bound):
    if not isinstance(step, dict):
        return 'a step is an object {"tool": ..., "args": {...}}'
    for key in step:
        if key not in STEP_KEYS:
            return "unknown key '%s'; a step has %s" % (key, ", ".join(STEP_KEYS))
    tool = tools.find(step.get("tool"))  # None for a name that is no tool, or no string
    if tool is None:
        return "unknown tool %r; tools: %s" % (step.get("tool"), ", ".join(tools.names()))
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
        if err is None:  # a list or object would not hash
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
    if len(chain) > limits.MAX_ROUTINE_DEPTH:  # already too deep: walking on costs 12**levels steps
        return 1
    deepest = 0
    for target in _calls(all_routines.get(name, ())):
        deepest = max(deepest, _depth(target, all_routines, chain + [name]))
    return deepest + 1


def check_routine(dev, name, steps):
    """Error text for one routine, or None. dev=None skips checks of literal values (pins...)."""
    err = check_name(name, "routine name")
    if err:
        return err
    if not isinstance(steps, list) or not steps:
        return "steps must be a non-empty list of steps"
    if len(steps) > limits.MAX_ROUTINE_STEPS:
        return "%d steps; the limit is %d" % (len(steps), limits.MAX_ROUTINE_STEPS)
    try:
        store.check_plain(steps)  # an infinite number (1e999) would be stored, then refused by store.save
        size = len(json.dumps(steps).encode())  # bytes: "é" is one character and two bytes on flash
    except TypeError as e:
        return "steps must be plain JSON (%s)" % e
    if size > limits.MAX_ROUTINE_BYTES:
        return "steps take %d bytes; the limit is %d" % (size, limits.MAX_ROUTINE_BYTES)
    bound = set()
    for i, step in enumerate(steps):
        err = _check_step(dev, step, bound)
        if err:
            return "step %d: %s" % (i + 1, err)
    return None


def check_all(dev, routines, new=None):
    """Error text for a whole set of routines {name: steps} (count, each routine, nesting), or None.
    new: the routine being defined, which may run only routines that exist. One that others run
    may be deleted (their runs then say so, as a job's does): that holds no define or restore up."""
    if not isinstance(routines, dict):
        return "routines must be an object of name: steps"
    if len(routines) > limits.MAX_ROUTINES:
        return "%d routines; the limit is %d" % (len(routines), limits.MAX_ROUTINES)
    for name in routines:
        err = check_routine(dev, name, routines[name])
        if err:
            return "routine '%s': %s" % (name, err) if isinstance(name, str) else err
    for target in _calls(routines.get(new, ())):
        if target not in routines:
            return "routine '%s' runs '%s', which does not exist; define it first" % (new, target)
    try:
        for name in routines:
            if _depth(name, routines, []) > limits.MAX_ROUTINE_DEPTH:
                return "routine '%s' nests routines deeper than %d levels" % (name, limits.MAX_ROUTINE_DEPTH)
    except ValueError as e:
        return str(e)
    return None
