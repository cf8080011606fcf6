# Running a named routine (wisp/routines.py stores them): steps in order, bound results, JSON
# conditions (never eval), nested runs with their depth and origin. Loaded only while a routine
# runs: Device.rest drops it with the routines when none does.
import asyncio

from wisp import NAME_CHARS, limits, tools
from wisp.pins import NamedPin
from wisp.routines import _literal, _ref

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
    if text in ("true", "false"):  # a fact set to true/false reads back so (memory.show)
        return text == "true"
    number = _number(text.split()[0]) if text else None
    return text if number is None else number

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


def _shown(v):
    # true/false as facts read (memory.show): a summary an outer routine binds reads back the same
    return ("true" if v else "false") if isinstance(v, bool) else v


def _summary(ran, skipped, failed, bound, order):
    text = "ok: %d step%s ran" % (ran, "" if ran == 1 else "s")
    if skipped:
        text += ", %d skipped" % skipped
    if failed:
        text += ", %d failed" % failed
    if bound:
        text += "; " + ", ".join("%s=%s" % (k, _shown(bound[k])) for k in order)
    return text


async def run(routines, name, trigger="tool", llm=0):
    """Routines.run: one short summary line ("ok: ..." or "Error: ..."). Never raises."""
    routines.keep += 1
    try:
        summary = await _run(routines, name, 1, llm, [NamedPin.changes, 0], [])
    except Exception as e:  # a hand-edited store must not take the loop down
        summary = "Error: routine '%s' failed: %r" % (name, e)
    finally:
        routines.keep -= 1
    if trigger != "tool":
        routines.log("routine %s (%s): %s" % (name, trigger, summary))
    return summary


def _from_llm(dev, tool, args):
    """Whether a read's result may carry text the LLM wrote: a fact it set, or a list holding
    its facts, routines or jobs (their names and prompts), or a pin's level it set."""
    if tool == "memory_get":
        return dev.memory.by_llm(args.get("key"))
    if tool in ("gpio_read", "gpio_toggle"):  # a level the LLM set, or toggled from one it set
        return dev.pins[args["pin"]].by_llm
    if tool == "memory_list":
        return bool(dev.memory.llm_keys())
    if tool == "routine_list":
        return bool(dev.routines.llm_names())
    if tool == "schedule_list":
        return any(job.get("llm") for job in dev.sched.jobs())
    return False


def _reads(cond, names):
    """Whether a condition reads any of these bound names."""
    if isinstance(cond, dict):
        key, sub = list(cond.items())[0]
        return _reads(sub, names) if key == "not" else any(_reads(c, names) for c in sub)
    left = cond[0][1:] if cond[0].startswith("$") else cond[0]
    return left in names or _ref(cond[2]) in names


async def _step(routines, step, bound, depth, llm, tainted, budget):
    """Run one step whose condition holds; the value it binds (None without "as"). Raises ValueError
    with the reason when it fails (a tool's "Error: ..." included). tainted: bound names whose
    value is a fact the LLM wrote; a step using one acts for the LLM."""
    args = {}
    for k, v in step.get("args", {}).items():
        args[k] = _resolve(v, bound)
        if not llm and _ref(v) in tainted:
            llm = 2
    if llm and "as" in step:
        tainted.add(step["as"])  # before the call: a failure that leaves it unbound is the LLM's too
    tool, inner = step["tool"], []  # inner: set by a nested run whose summary holds what the LLM wrote
    if tool == "routine_run":  # nested directly, so the depth and origin travel with the call
        result = tools.check(routines.dev, tool, args)[1] or await _run(
            routines, args["name"], depth + 1, llm, budget, inner)
    else:
        result = await tools.run(routines.dev, tool, args, llm)
    if inner and "as" in step:
        tainted.add(step["as"])  # failed or not, the inner run's outcome is the LLM's
    if result.startswith("Error"):
        raise ValueError(result[7:] if result.startswith("Error: ") else result)
    if "as" not in step:
        return None
    if _from_llm(routines.dev, tool, args):
        tainted.add(step["as"])
    try:
        return bind_value(result, step.get("pick"))
    except ValueError as e:
        raise ValueError("%s in %r" % (e, result))


async def _run(routines, name, depth, llm, budget, taint):
    """budget: [NamedPin.changes when the outermost run began, steps taken], shared by the whole run,
    which may add MAX_RUN_SWITCHES and take MAX_RUN_STEPS. taint: appended to when the summary
    carries what the LLM wrote or decided (an LLM routine, or a value bound from its facts)."""
    steps = routines._routines.get(name)
    if not llm and name in routines._llm:
        llm = 2  # the LLM wrote it; who runs it cannot vouch for what it does
    if steps is None:
        return "Error: no routine '%s'; routines: %s" % (name, ", ".join(routines.list()) or "none")
    if depth > limits.MAX_ROUTINE_DEPTH:
        return "Error: routines nested deeper than %d levels" % limits.MAX_ROUTINE_DEPTH
    bound, order, ran, skipped, failed, tainted = {}, [], 0, 0, 0, set()  # order: names as first bound
    for i, step in enumerate(steps):
        await asyncio.sleep_ms(0)  # one step at a time: MQTT, the scheduler and asks keep running
        budget[1] += 1
        if NamedPin.changes - budget[0] >= limits.MAX_RUN_SWITCHES:  # nested routines fan out: relay wear
            return "Error: routine '%s' stopped at step %d: %d pin changes in one run is the limit" % (
                name, i + 1, limits.MAX_RUN_SWITCHES)
        if budget[1] > limits.MAX_RUN_STEPS:  # ...and flash wear (memory_set leaves), and time
            return "Error: routine '%s' stopped at step %d: %d steps in one run is the limit" % (
                name, i + 1, limits.MAX_RUN_STEPS)
        try:
            # a condition on what the LLM wrote lets it decide the step: the step acts for it,
            # and the name it binds is the LLM's whether it runs or not (a later condition on
            # an unbound name, "not y == 0", holds)
            step_llm = llm or (2 if "if" in step and _reads(step["if"], tainted) else 0)
            if step_llm and "as" in step:
                tainted.add(step["as"])
            if "if" in step and not _holds(step["if"], bound):
                skipped += 1
                continue
            ran += 1
            value = await _step(routines, step, bound, depth, step_llm, tainted, budget)
        except ValueError as e:
            if step.get("continue") is True:
                failed += 1
                continue
            if llm or tainted:
                taint.append(1)  # the LLM may have made it fail
            return "Error: routine '%s' stopped at step %d (%s): %s" % (name, i + 1, step["tool"], e)
        if "as" in step:
            if step["as"] not in bound:
                order.append(step["as"])
            bound[step["as"]] = value
    if llm or tainted:
        taint.append(1)
    return _summary(ran, skipped, failed, bound, order)
