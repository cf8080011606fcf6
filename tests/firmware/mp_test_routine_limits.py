# Routines against hostile input: what an LLM or a script may send (numbers JSON cannot hold,
# names that are not names, fan-out through nested routines), values that carry the LLM's mark
# through nested runs, and hand-edited files. The everyday behaviour is in mp_test_routines.py.

from fakeboard import make_device, run
from mp_test_routines import FAN, PORCH, _device, _read, _refused, _remember, _write
from mpcheck import check, eq

from wisp import limits, tools
from wisp.memory import Memory
from wisp.routines import Routines


def test_an_infinite_number_is_refused_when_defined_and_later_saves_still_work():
    # 1e999 in a payload parses as inf (on the ESP32's 32-bit floats, anything past 3.4e38 does):
    # accepted, the routine sat in RAM, never on flash, and every later define or delete failed
    import json
    dev = _device()
    inf = json.loads("1e999")
    _refused(dev, "r", [_remember("k", inf)], "plain JSON")
    _refused(dev, "r", [_read("door", "d"), _write("fan", 1, ["d", "==", inf])], "plain JSON")
    eq(dev.routines.list(), [])
    dev.routines.define("fine", [_write("fan", 1)])
    eq(Routines(make_device()).list(), ["fine"])


def test_the_byte_cap_counts_bytes_not_characters():
    # the cap bounds routines.json, which every run loads into the heap: "é" takes two bytes there
    dev = _device()
    text = "é" * (limits.MAX_ROUTINE_BYTES // 2)
    _refused(dev, "r", [{"tool": "publish", "args": {"topic": "wisp/t1/n", "payload": text}}],
             "bytes; the limit is %d" % limits.MAX_ROUTINE_BYTES)
    dev.routines.define("r", [{"tool": "publish", "args": {"topic": "wisp/t1/n", "payload": text[:400]}}])


def test_an_as_that_is_not_a_name_is_refused_with_the_reason():
    # an object or list as "as" raised TypeError (unhashable) out of the check
    dev = _device()
    for bad in ({}, [1], None):
        _refused(dev, "r", [{"tool": "gpio_read", "args": {"pin": "door"}, "as": bad}], "step 1", "\"as\" must be")
    eq(run(tools.run(dev, "routine_define", {"name": "r", "steps": [{"tool": "gpio_read", "args": {"pin": "door"},
       "as": {}}]})), "Error: routine 'r' not saved: step 1: \"as\" must be a string of 1-24 characters")


def test_a_run_that_fans_out_through_nested_routines_stops_at_the_step_cap():
    # 12 steps each running 12 routines of 12 memory writes: 1728 flash writes in one run
    from wisp import store
    dev = _device()
    n = limits.MAX_ROUTINE_STEPS
    dev.routines.define("l1", [_remember("k", "v%d" % i) for i in range(n)])
    for level in range(2, limits.MAX_ROUTINE_DEPTH + 1):
        dev.routines.define("l%d" % level, [{"tool": "routine_run", "args": {"name": "l%d" % (level - 1)}}] * n)
    saves, real = [], store.save

    def counted(name, obj):
        saves.append(name)
        real(name, obj)
    store.save = counted
    try:
        result = run(dev.routines.run("l%d" % limits.MAX_ROUTINE_DEPTH))
    finally:
        store.save = real
    if not result.startswith("Error: routine 'l3' stopped at step 1 (routine_run)") or \
            "%d steps in one run is the limit" % limits.MAX_RUN_STEPS not in result:
        raise Exception(result)
    if len(saves) >= limits.MAX_RUN_STEPS:
        raise Exception("%d flash writes in one run" % len(saves))
    eq(run(dev.routines.run("l1")), "ok: %d steps ran" % n)  # a plain routine is untouched
    eq(run(dev.routines.run("l1")), "ok: %d steps ran" % n)  # the budget is per run


CONFIRM_PINS = {"heater": {"pin": 19, "mode": "out", "confirm": True, "min_interval_ms": 0},
                "fan": {"pin": 18, "mode": "out", "min_interval_ms": 0}}


def test_a_value_passed_up_from_a_nested_routine_stays_the_llms():
    # the owner's inner routine reads a fact the LLM wrote; the outer binds the inner's summary
    # (its last "=": the fact) and switches a confirm pin with it: that is the LLM acting
    _device()
    dev = make_device(pins=CONFIRM_PINS)
    dev.memory = Memory()
    dev.routines = Routines(dev)
    dev.routines.define("inner", [{"tool": "memory_get", "args": {"key": "t"}, "as": "v"}])
    dev.routines.define("outer", [{"tool": "routine_run", "args": {"name": "inner"}, "as": "r"},
                                  {"tool": "gpio_write", "args": {"pin": "$r", "value": 1}}])
    dev.routines.define("by_if", [{"tool": "routine_run", "args": {"name": "inner"}, "as": "r", "pick": "v"},
                                  {"tool": "gpio_write", "args": {"pin": "heater", "value": 1},
                                   "if": ["r", "==", "heater"]}])
    run(tools.run(dev, "memory_set", {"key": "t", "value": "heater"}, 1))  # as the LLM's call does
    for name in ("outer", "by_if"):
        result = run(dev.routines.run(name, "schedule"))
        if dev.board.levels[19] != 0 or "cannot ask for it" not in result:
            raise Exception("%s: %r" % (name, result))
    run(tools.run(dev, "memory_set", {"key": "t", "value": "heater"}))  # the owner says so
    eq(run(dev.routines.run("outer", "schedule")), "ok: 2 steps ran; r=heater")
    eq(dev.board.levels[19], 1)


def test_a_routines_file_with_junk_in_its_llm_list_still_loads():
    _device()
    with open("routines.json", "w") as f:
        f.write('{"v": 1, "routines": {"r": [{"tool": "gpio_read", "args": {"pin": "door"}}]}, "llm": [{}, "r"]}')
    r = Routines(make_device())
    eq((r.list(), r.llm_names()), (["r"], ["r"]))


def test_a_routine_redefined_or_deleted_while_it_runs_finishes_the_steps_it_began_with():
    dev = _device()
    dev.routines.define("other", [_write("fan", 1)])
    dev.routines.define("self", [{"tool": "routine_delete", "args": {"name": "self"}},
                                 {"tool": "routine_define", "args": {"name": "other", "steps": [_write("fan", 0)]}},
                                 {"tool": "routine_run", "args": {"name": "other"}}, _write("porch_light", 1)])
    eq(run(dev.routines.run("self")), "ok: 4 steps ran")
    eq((dev.routines.list(), dev.board.levels[FAN], dev.board.levels[PORCH]), (["other"], 0, 1))
    eq(run(dev.routines.run("self")), "Error: no routine 'self'; routines: other")


def test_a_restore_of_deeply_chained_routines_is_refused_not_walked_forever():
    # a hand-edited backup.json: each routine runs the next 12 times. The nesting check walked every
    # path, 12**n of them (70 s for 8 routines on a PC; an ESP32 would never finish the restore)
    from wisp import routine_check
    chain = {"r%d" % i: [{"tool": "routine_run", "args": {"name": "r%d" % (i + 1)}}] * limits.MAX_ROUTINE_STEPS
             for i in range(limits.MAX_ROUTINES - 1)}
    chain["r%d" % (limits.MAX_ROUTINES - 1)] = [_read("door", "door")]
    import time
    t0 = time.ticks_ms()
    err = routine_check.check_all(None, chain)
    check(err and err.endswith("nests routines deeper than %d levels" % limits.MAX_ROUTINE_DEPTH), err)
    took_ms = time.ticks_diff(time.ticks_ms(), t0)
    check(took_ms < 5000, "the check took %d ms: a board would seem hung" % took_ms)  # a hang, not a speed goal
