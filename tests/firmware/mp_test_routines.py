# wisp.routines: routines defined once, checked at define time, run offline with bound results,
# JSON conditions and "$name" references; the routine_* tools.
import asyncio
import json
import os

from fakeboard import make_device, run
from mpcheck import all_pages, check, eq

from wisp import limits, tools
from wisp.memory import Memory
from wisp.routine_run import bind_value
from wisp.routines import Routines

DOOR, PORCH, FAN = 4, 5, 18  # pin numbers of fakeboard.PINS


def _device():
    for f in ("memory.json", "routines.json", "routines.bad"):
        try:
            os.remove(f)
        except OSError:
            pass
    dev = make_device()
    dev.memory = Memory()
    dev.routines = Routines(dev)
    return dev


def _refused(dev, name, steps, *fragments):
    try:
        dev.routines.define(name, steps)
    except ValueError as e:
        for frag in fragments:
            if frag not in str(e):
                raise Exception("%r not in %r" % (frag, str(e)))
        return str(e)
    raise Exception("routine %r was accepted" % (steps,))


def _read(pin, as_name):
    return {"tool": "gpio_read", "args": {"pin": pin}, "as": as_name}


def _write(pin, value, cond=None):
    step = {"tool": "gpio_write", "args": {"pin": pin, "value": value}}
    if cond is not None:
        step["if"] = cond
    return step


def _remember(key, value, as_name=None):
    step = {"tool": "memory_set", "args": {"key": key, "value": value}}
    if as_name:
        step["as"] = as_name
    return step


def test_binding_rule():
    eq(bind_value("door=1"), 1)
    eq(bind_value("ok: porch_light=0"), 0)
    eq(bind_value("temp=21.5"), 21.5)
    eq(bind_value("room: temp=21.5 C"), 21.5)  # a number followed by its unit
    eq(bind_value("name=Ada Lovelace"), "Ada Lovelace")
    eq(bind_value("ok: a=1, b=two"), "two")  # the last '='
    eq(bind_value("no equals here"), "no equals here")
    eq(bind_value("day=2026-05-01"), "2026-05-01")
    eq(bind_value("room: temp=21.5 C, hum=40 %", "temp"), 21.5)
    eq(bind_value("room: temp=21.5 C, hum=40 %", "hum"), 40)
    eq(bind_value("max_temp=30, temp=20", "temp"), 20)
    eq(bind_value("away=true"), True)
    eq(bind_value("ok: away=false"), False)


def test_a_fact_set_to_true_reads_back_as_true_and_a_condition_on_it_holds():
    dev = _device()
    eq(run(tools.run(dev, "memory_set", {"key": "away", "value": True})), "ok: remembered away=true")
    eq(run(tools.run(dev, "memory_get", {"key": "away"})), "away=true")
    eq(run(tools.run(dev, "memory_list", {})), "1 facts: away=true")
    dev.routines.define("leave", [{"tool": "memory_get", "args": {"key": "away"}, "as": "away"},
                                  _write("porch_light", 1, ["away", "==", True])])
    eq(run(dev.routines.run("leave")), "ok: 2 steps ran; away=true")
    eq(dev.board.levels[PORCH], 1)


def test_results_bind_and_conditions_decide_which_steps_run():
    dev = _device()
    dev.routines.define("arrive", [
        _read("door", "door"),                      # door is pulled up: door=1
        _write("porch_light", 1, ["door", "==", 1]),
        _write("fan", 1, ["door", "==", 0]),        # false: skipped
    ])
    eq(run(dev.routines.run("arrive")), "ok: 2 steps ran, 1 skipped; door=1")
    eq((dev.board.levels[PORCH], dev.board.levels[FAN]), (1, 0))
    dev.board.levels[DOOR] = 0
    eq(run(dev.routines.run("arrive")), "ok: 2 steps ran, 1 skipped; door=0")
    eq(dev.board.levels[FAN], 1)


def test_all_any_not_and_number_comparisons():
    dev = _device()
    dev.memory.set("temp", 26.5)
    dev.memory.set("limit", 25)
    dev.routines.define("cool", [
        {"tool": "memory_get", "args": {"key": "temp"}, "as": "temp"},
        {"tool": "memory_get", "args": {"key": "limit"}, "as": "limit"},
        _read("door", "door"),
        _write("fan", 1, {"all": [["temp", ">", "$limit"], ["door", "==", 1]]}),
        _write("porch_light", 1, {"any": [["temp", "<", 10], {"not": ["door", "!=", 1]}]}),
        _remember("hot", "yes", "hot"),
        _remember("cold", "yes"),
    ])
    dev.routines.define("cool2", [
        {"tool": "memory_get", "args": {"key": "temp"}, "as": "t"},
        _write("fan", 0, {"any": [["t", "<=", 26], ["t", ">=", 27]]}),   # false: fan stays on
        _write("porch_light", 0, {"not": {"all": [["t", ">", 26], ["t", "<", 27]]}}),  # false
    ])
    eq(run(dev.routines.run("cool")), "ok: 7 steps ran; temp=26.5, limit=25, door=1, hot=yes")
    eq((dev.board.levels[FAN], dev.board.levels[PORCH]), (1, 1))
    eq(run(dev.routines.run("cool2")), "ok: 1 step ran, 2 skipped; t=26.5")
    eq((dev.board.levels[FAN], dev.board.levels[PORCH]), (1, 1))


def test_dollar_references_pass_earlier_results_as_arguments():
    dev = _device()
    dev.routines.define("mirror", [
        _read("door", "d"),
        {"tool": "gpio_write", "args": {"pin": "fan", "value": "$d"}, "as": "fan"},
        _remember("door_seen", "$d"),
        _remember("note", "$$5 off"),  # "$$" is a literal "$"
    ])
    eq(run(dev.routines.run("mirror")), "ok: 4 steps ran; d=1, fan=1")
    eq((dev.board.levels[FAN], dev.memory.get("door_seen"), dev.memory.get("note")), (1, 1, "$5 off"))


def test_pick_selects_one_field_of_a_result():
    dev = _device()
    dev.memory.set("climate", "temp=21.5 C, hum=40 %")
    dev.routines.define("humid", [
        {"tool": "memory_get", "args": {"key": "climate"}, "as": "hum", "pick": "hum"},
        {"tool": "memory_get", "args": {"key": "climate"}, "as": "t", "pick": "temp"},
        _write("fan", 1, {"all": [["hum", ">=", 40], ["t", ">", 20]]}),
        {"tool": "memory_get", "args": {"key": "climate"}, "as": "x", "pick": "wind"},
    ])
    result = run(dev.routines.run("humid"))
    eq(dev.board.levels[FAN], 1)
    if "stopped at step 4 (memory_get)" not in result or "no 'wind='" not in result:
        raise Exception(result)


def test_invalid_routines_are_refused_at_define_time_with_the_reason():
    dev = _device()
    _refused(dev, "r", [{"tool": "launch", "args": {}}], "step 1", "unknown tool 'launch'", "gpio_write")
    _refused(dev, "r", [_read("door", "d"), {"tool": "gpio_write", "args": {"pin": "fan"}}],
             "step 2", "'value' required")
    _refused(dev, "r", [{"tool": "gpio_write", "args": {"pin": "garage", "value": 1}}], "'garage' is not configured")
    _refused(dev, "r", [{"tool": "gpio_write", "args": {"pin": "fan", "value": 7}}], "'value' must be 0 or 1")
    _refused(dev, "r", [{"tool": "gpio_read", "args": {"pin": "door", "speed": 1}}], "unknown argument 'speed'")
    _refused(dev, "r", [{"tool": "gpio_write", "args": {"pin": "fan", "value": "$x"}}], "'$x' is not bound")
    _refused(dev, "r", [_write("fan", 1, ["door", "==", 1])], "condition on 'door'")
    _refused(dev, "r", [_read("door", "door"), _write("fan", 1, ["door", "=~", 1])], "step 2", "op")
    _refused(dev, "r", [_read("door", "door"), _write("fan", 1, ["door", "==", "$nope"])], "'$nope'")
    _refused(dev, "r", [_read("door", "door"), _write("fan", 1, {"all": []})], "non-empty list")
    _refused(dev, "r", [_read("door", "door"), _write("fan", 1, {"maybe": ["door", "==", 1]})], "a condition is")
    deep = ["door", "==", 1]
    for _ in range(limits.MAX_CONDITION_DEPTH):
        deep = {"not": deep}
    _refused(dev, "r", [_read("door", "door"), _write("fan", 1, deep)], "deeper than")
    _refused(dev, "r", [{"tool": "gpio_read", "args": {"pin": "door"}, "when": 1}], "unknown key 'when'")
    _refused(dev, "r", [{"tool": "gpio_read", "args": {"pin": "door"}, "continue": 1}], "true or false")
    _refused(dev, "r", [{"tool": "gpio_read", "args": {"pin": "door"}, "as": "a b"}], "letters, digits")
    _refused(dev, "r", [], "non-empty list")
    _refused(dev, "r", "gpio_read", "non-empty list")
    _refused(dev, "r", [_read("door", "d")] * (limits.MAX_ROUTINE_STEPS + 1), "limit is %d" % limits.MAX_ROUTINE_STEPS)
    _refused(dev, "r", [_remember("k", "x" * 150)] * 8, "bytes", "limit is %d" % limits.MAX_ROUTINE_BYTES)
    _refused(dev, "bad name!", [_read("door", "d")], "routine name")
    _refused(dev, "r", [{"tool": "routine_run", "args": {"name": "r"}}], "would run itself", "r -> r")
    _refused(dev, "r", [{"tool": "routine_run", "args": {"name": "ghost"}}], "'ghost'", "define it first")
    eq(dev.routines.list(), [])


def test_routines_may_run_routines_up_to_the_depth_cap_never_in_a_cycle():
    dev = _device()
    dev.routines.define("l1", [_write("fan", 1)])
    for n in range(2, limits.MAX_ROUTINE_DEPTH + 1):
        dev.routines.define("l%d" % n, [{"tool": "routine_run", "args": {"name": "l%d" % (n - 1)}, "as": "inner"}])
    top = "l%d" % limits.MAX_ROUTINE_DEPTH
    result = run(dev.routines.run(top))
    if not result.startswith("ok: 1 step ran; inner=") or dev.board.levels[FAN] != 1:
        raise Exception(result)
    _refused(dev, "too_deep", [{"tool": "routine_run", "args": {"name": top}}],
             "deeper than %d" % limits.MAX_ROUTINE_DEPTH)
    _refused(dev, "l1", [{"tool": "routine_run", "args": {"name": top}}], "would run itself")  # a cycle via redefine
    # a name known only at run time is caught by the run-time depth check
    dev.memory.set("target", "loop")
    dev.routines.define("loop", [{"tool": "memory_get", "args": {"key": "target"}, "as": "t"},
                                 {"tool": "routine_run", "args": {"name": "$t"}}])
    result = run(dev.routines.run("loop"))
    if "nested deeper than %d" % limits.MAX_ROUTINE_DEPTH not in result or not result.startswith("Error"):
        raise Exception(result)


def test_deleting_a_routine_another_runs_blocks_no_other_define_nor_the_restore():
    # Deleting the inner routine is allowed (its caller's run then says so), as for a job. Every
    # later define used to fail on the caller ("'outer' runs 'inner', which does not exist"),
    # whatever routine it was, and an export of the device could not be restored.
    from wisp import backup
    dev = _device()
    dev.routines.define("inner", [_write("fan", 1)])
    dev.routines.define("outer", [{"tool": "routine_run", "args": {"name": "inner"}}])
    eq(dev.routines.delete("inner"), True)
    dev.routines.define("porch", [_write("porch_light", 1)])
    eq(dev.routines.list(), ["outer", "porch"])
    eq(run(dev.routines.run("outer")), "Error: routine 'outer' stopped at step 1 (routine_run): "
                                        "no routine 'inner'; routines: outer, porch")
    _refused(dev, "new", [{"tool": "routine_run", "args": {"name": "inner"}}], "'inner', which does not exist")
    doc = backup.export(dev)
    os.remove("routines.json")
    eq(backup.restore(dev, {"v": 1, "routines": doc["routines"]}), "ok: restored 2 routines")


def test_a_failing_step_stops_the_routine_unless_it_may_continue():
    dev = _device()
    dev.routines.define("stop", [
        _read("door", "door"),
        {"tool": "memory_get", "args": {"key": "missing"}},
        _write("fan", 1),
    ])
    result = run(dev.routines.run("stop"))
    eq(result[:58], "Error: routine 'stop' stopped at step 2 (memory_get): noth")
    if "nothing remembered as 'missing'" not in result:
        raise Exception(result)
    eq(dev.board.levels[FAN], 0)  # step 3 never ran
    dev.routines.define("go_on", [
        {"tool": "memory_get", "args": {"key": "missing"}, "as": "m", "continue": True},
        {"tool": "gpio_write", "args": {"pin": "fan", "value": "$m"}, "continue": True},  # $m has no value
        _write("fan", 1, {"not": ["m", "==", 1]}),  # m unbound: the comparison is false
    ])
    eq(run(dev.routines.run("go_on")), "ok: 3 steps ran, 2 failed")
    eq(dev.board.levels[FAN], 1)


def test_comparing_text_by_size_is_a_clear_step_error():
    dev = _device()
    dev.memory.set("mode", "auto")
    dev.routines.define("cmp", [{"tool": "memory_get", "args": {"key": "mode"}, "as": "mode"},
                                _write("fan", 1, ["mode", ">", 3])])
    result = run(dev.routines.run("cmp"))
    if not result.startswith("Error: routine 'cmp' stopped at step 2") or "must be numbers" not in result:
        raise Exception(result)


def test_unknown_routine_is_a_readable_error():
    dev = _device()
    dev.routines.define("a", [_write("fan", 1)])
    eq(run(dev.routines.run("zzz")), "Error: no routine 'zzz'; routines: a")


def test_routines_survive_a_restart_and_caps_hold():
    dev = _device()
    dev.routines.define("night", [_write("porch_light", 0), _write("fan", 0)])
    again = Routines(make_device())
    eq(again.list(), ["night"])
    eq(again.get("night"), [_write("porch_light", 0), _write("fan", 0)])
    eq(again.delete("night"), True)
    eq(again.delete("night"), False)
    eq(Routines(make_device()).list(), [])
    dev.routines = Routines(dev)
    for n in range(limits.MAX_ROUTINES):
        dev.routines.define("r%d" % n, [_write("fan", 1)])
    _refused(dev, "one_more", [_write("fan", 1)], "limit", "delete one first")
    dev.routines.define("r0", [_write("fan", 0)])  # replacing one is fine at the cap


def test_corrupt_routines_file_is_kept_aside():
    _device()
    with open("routines.json", "w") as f:
        f.write('{"v": 1, "routines": {"a": [')
    lines = []
    r = Routines(make_device(), lines.append)
    eq(r.list(), [])
    if not any("routines.bad" in line for line in lines):
        raise Exception(lines)


def test_routines_of_another_shape_are_kept_aside_before_a_save_drops_them():
    _device()
    doc = '{"v": 1, "routines": {"ok": [{"tool": "gpio_read", "args": {"pin": "door"}}], "old": "gpio_read door"}}'
    with open("routines.json", "w") as f:
        f.write(doc)
    lines = []
    r = Routines(make_device(), lines.append)
    r.define("new", [_read("door", "d")])
    eq(sorted(Routines(make_device()).list()), ["new", "ok"])
    with open("routines.bad") as f:
        eq(json.load(f), json.loads(doc), "the whole file, kept aside")
    eq(lines[1:], ["store: routines.json kept aside as routines.bad"])


async def test_a_running_routine_lets_other_tasks_run_between_steps():
    dev = _device()
    dev.routines.define("long", [_read("door", "d%d" % n) for n in range(limits.MAX_ROUTINE_STEPS)])
    ticks = []

    async def ticker():
        while True:
            ticks.append(1)
            await asyncio.sleep_ms(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep_ms(0)
    ticks.clear()
    result = await dev.routines.run("long")
    task.cancel()
    if not result.startswith("ok: %d steps ran" % limits.MAX_ROUTINE_STEPS):
        raise Exception(result)
    if len(ticks) < limits.MAX_ROUTINE_STEPS - 1:
        raise Exception("other tasks ran only %d times during %d steps" % (len(ticks), limits.MAX_ROUTINE_STEPS))


def test_routine_tools_through_the_registry():
    dev = _device()

    def call(name, args):
        return run(tools.run(dev, name, args))

    steps = [_read("door", "door"), _write("porch_light", 1, ["door", "==", 1])]
    eq(call("routine_define", {"name": "welcome", "steps": steps}), "ok: routine 'welcome' saved (2 steps)")
    eq(call("routine_list", {}), "1 routines: welcome (2 steps)")
    eq(call("routine_run", {"name": "welcome"}), "ok: 2 steps ran; door=1")
    eq(dev.board.levels[PORCH], 1)
    steps = [{"tool": "gpio_write", "args": {"pin": "door", "value": 1}}]
    err = call("routine_define", {"name": "bad", "steps": steps})
    eq(err, "Error: routine 'bad' not saved: step 1: pin 'door' is not an output")
    eq(call("routine_define", {"name": "x", "steps": "turn it on"}), "Error: 'steps' must be a list")
    eq(call("routine_delete", {"name": "welcome"}), "ok: routine 'welcome' deleted")
    eq(call("routine_delete", {"name": "welcome"}), "Error: no routine 'welcome'; routines: none")
    eq(call("routine_list", {}), "no routines")


def test_non_tool_triggers_log_the_summary():
    for f in ("routines.json",):
        try:
            os.remove(f)
        except OSError:
            pass
    lines = []
    dev = make_device()
    dev.memory = Memory()
    dev.routines = Routines(dev, lines.append)
    dev.routines.define("tick", [_write("fan", 1)])
    eq(run(dev.routines.run("tick", "sched")), "ok: 1 step ran")
    eq(lines, ["routine tick (sched): ok: 1 step ran"])


def test_the_example_in_the_docs_runs_as_documented():
    _device()
    dev = make_device(dev_id="hall")
    dev.memory = Memory()
    dev.routines = Routines(dev)
    dev.memory.set("climate", "temp=26 C, hum=40 %")
    steps = [
        {"tool": "gpio_read", "args": {"pin": "door"}, "as": "door"},
        {"tool": "memory_get", "args": {"key": "climate"}, "as": "temp", "pick": "temp"},
        {"tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}, "if": ["door", "==", 1]},
        {"tool": "gpio_write", "args": {"pin": "fan", "value": 1},
         "if": {"all": [["temp", ">", 25], {"not": ["door", "==", 0]}]}},
        {"tool": "memory_set", "args": {"key": "last_door", "value": "$door"}},
        {"tool": "publish", "args": {"topic": "wisp/hall/notes", "payload": "home"}, "continue": True},
    ]
    eq(run(tools.run(dev, "routine_define", {"name": "arrive_home", "steps": steps})),
           "ok: routine 'arrive_home' saved (6 steps)")
    eq(run(tools.run(dev, "routine_run", {"name": "arrive_home"})), "ok: 6 steps ran; door=1, temp=26")
    eq((dev.board.levels[PORCH], dev.board.levels[FAN], dev.memory.get("last_door")), (1, 1, 1))
    if ("wisp/hall/notes", "home", False, 1) not in dev.link.sent:
        raise Exception(dev.link.sent)


def test_a_hand_edited_routine_that_breaks_fails_its_run_not_the_device():
    _device()
    with open("routines.json", "w") as f:
        f.write('{"v": 1, "routines": {"odd": [{"tool": "gpio_read", "args": {"pin": "door"}, "as": "d",'
                ' "if": {"all": 5}}], "junk": 7}}')
    lines = []
    r = Routines(make_device(), lines.append)
    eq(r.list(), ["odd"])
    if not any("'junk' dropped" in line for line in lines):
        raise Exception(lines)
    result = run(r.run("odd"))
    if not result.startswith("Error: routine 'odd' failed"):
        raise Exception(result)


def test_defining_a_routine_does_not_load_its_runner():
    # routine_define's peak is the store and its checks; the runner loads for a run and goes with
    # the routines when the device rests
    import sys

    from wisp import unload
    unload("wisp.routine_run")
    dev = make_device()
    run(tools.run(dev, "routine_define", {"name": "night", "steps": [_read("door", "door")]}))
    eq("wisp.routine_run" in sys.modules, False, "runner loaded to define a routine")
    eq(run(tools.run(dev, "routine_run", {"name": "night"}))[:10], "ok: 1 step", "the run")
    eq("wisp.routine_run" in sys.modules, True, "runner not loaded by a run")
    dev.rest()
    eq("wisp.routine_run" in sys.modules or "routines" in dev.__dict__, False, "runner kept after rest")


def test_every_routine_of_a_full_device_can_be_listed():
    # a tool result is cut at 200 characters: with 16 routines of ordinary names the list stopped
    # after the seventh, and neither the LLM nor the dashboard could see (or delete) the rest
    dev = _device()
    names = ["evening_lights_%02d" % i for i in range(limits.MAX_ROUTINES)]
    for name in names:
        dev.routines.define(name, [_read("door", "door")])
    pages = all_pages(lambda name, args: run(tools.run(dev, name, args)), "routine_list")
    check(len(pages) > 1, "one page held them all: %r" % pages)
    check(pages[0].startswith("%d routines: " % len(names)), pages[0])
    seen = "; ".join(pages)
    for name in names:
        eq(seen.count(name + " (1 steps)"), 1, name)
    eq(run(tools.run(dev, "routine_list", {"skip": 40})), "none past skip=40")
