# wisp.memory: capped facts that survive a reboot, the freshest first in the LLM prompt, and
# the memory_* tools the LLM calls.
import json
import os

from fakeboard import make_device, run
from mpcheck import FullFlash, all_pages, check, eq, raises

from wisp import limits, tools
from wisp.memory import Memory


def _fresh(log=None):
    for f in ("memory.json", "memory.tmp", "memory.bad"):
        try:
            os.remove(f)
        except OSError:
            pass
    return Memory(log or (lambda line: None))


def test_facts_survive_a_fresh_memory_on_the_same_flash():
    m = _fresh()
    m.set("name", "Ada")
    m.set("water_ml", 250)
    m.set("likes_tea", True)
    m.set("temp_max", 25.5)
    m.set("name", "Ada L.")  # replaces
    eq(m.delete("water_ml"), True)
    eq(m.delete("water_ml"), False)
    again = Memory()
    eq(again.items(), [("name", "Ada L."), ("temp_max", 25.5), ("likes_tea", True)])
    eq(again.get("temp_max"), 25.5)
    eq(again.get("nope"), None)


def test_caps_are_refused_with_readable_reasons_and_change_nothing():
    m = _fresh()
    m.set("keep", "me")
    raises(lambda: m.set("k" * (limits.MAX_FACT_KEY + 1), 1), "characters", str(limits.MAX_FACT_KEY))
    raises(lambda: m.set("bad\nkey", 1), "control character")
    raises(lambda: m.set("", 1), "non-empty")
    raises(lambda: m.set(5, 1), "string")
    raises(lambda: m.set("v", "x" * (limits.MAX_FACT_VALUE + 1)), "bytes", str(limits.MAX_FACT_VALUE))
    raises(lambda: m.set("v", "é" * (limits.MAX_FACT_VALUE // 2 + 1)), "bytes")  # bytes, not characters
    raises(lambda: m.set("v", [1, 2]), "text, a number or true/false")
    raises(lambda: m.set("v", None), "text, a number")
    raises(lambda: m.set("v", float("nan")), "finite")
    eq(Memory().items(), [("keep", "me")])


def test_total_size_cap_refuses_a_fact_but_allows_replacing_one():
    m = _fresh()
    value = "x" * (limits.MAX_FACT_VALUE - 10)
    n = 0
    while True:
        try:
            m.set("f%02d" % n, value)
        except ValueError as e:
            if "memory full" not in str(e) or "delete a fact first" not in str(e):
                raise
            break
        n += 1
        if n > 100:
            raise Exception("no total cap")
    if m.used_bytes() > limits.MAX_FACTS_BYTES:
        raise Exception("over the cap: %d" % m.used_bytes())
    m.set("f00", "short")  # replacing frees its old bytes
    eq(len(Memory().items()), n)


def test_prompt_gets_the_freshest_facts_within_its_byte_budget():
    m = _fresh()
    m.set("a", "1")
    m.set("b", "2")
    m.set("c", "3")
    m.get("a")  # a read counts as use
    eq(m.for_prompt(), ["a: 1", "c: 3", "b: 2"])
    eq(m.for_prompt(10), ["a: 1", "c: 3"])  # 5 bytes each with the separator
    m.set("long", "y" * 150)
    lines = m.for_prompt(60)  # the long fact does not fit; shorter older ones still do
    eq(lines, ["a: 1", "c: 3", "b: 2"])
    total = sum(len(x) + 1 for x in m.for_prompt(limits.MAX_FACTS_PROMPT_BYTES))
    if total > limits.MAX_FACTS_PROMPT_BYTES:
        raise Exception(total)
    eq(m.for_prompt()[0], "long: " + "y" * 150)


def test_corrupt_store_boots_empty_keeps_the_file_and_says_so():
    _fresh()
    with open("memory.json", "w") as f:
        f.write('{"v": 1, "facts": [["name", "Ad')
    lines = []
    m = Memory(lines.append)
    eq(m.items(), [])
    if not lines or "memory.bad" not in lines[0]:
        raise Exception(lines)
    with open("memory.bad") as f:
        eq(f.read(), '{"v": 1, "facts": [["name", "Ad')
    m.set("name", "Ada")  # and it works again
    eq(Memory().get("name"), "Ada")


def test_hand_edited_store_keeps_the_valid_facts():
    _fresh()
    with open("memory.json", "w") as f:
        f.write('{"v": 1, "facts": [["ok", 1], ["bad\\u0001", 2], ["fine", "x"], [3]]}')
    lines = []
    m = Memory(lines.append)
    eq(m.items(), [("fine", "x"), ("ok", 1)])
    if not lines or "memory error" not in lines[0]:
        raise Exception(lines)


def test_facts_of_another_shape_are_kept_aside_before_a_save_drops_them():
    # the log named the first bad fact only, and the next save wrote over the file: the facts a
    # hand edit or another version shaped otherwise were gone with no copy
    _fresh()
    doc = '{"v": 1, "facts": [["ok", 1], ["x"], [2, "y"], ["name", "Ada"]]}'
    with open("memory.json", "w") as f:
        f.write(doc)
    lines = []
    m = Memory(lines.append)
    m.set("new", 3)
    eq(sorted(Memory().items()), [("name", "Ada"), ("new", 3), ("ok", 1)])
    with open("memory.bad") as f:
        eq(json.load(f), json.loads(doc), "the whole file, kept aside")
    eq(lines[1:], ["store: memory.json kept aside as memory.bad"])


def _tool(dev, name, args):
    return run(tools.run(dev, name, args))


def test_memory_tools_through_the_registry():
    dev = make_device()
    dev.memory = _fresh()
    eq(_tool(dev, "memory_set", {"key": "name", "value": "Ada"}), "ok: remembered name=Ada")
    eq(_tool(dev, "memory_set", {"key": "plants", "value": 3}), "ok: remembered plants=3")
    eq(_tool(dev, "memory_get", {"key": "name"}), "name=Ada")
    eq(_tool(dev, "memory_list", {}), "2 facts: name=Ada; plants=3")
    err = _tool(dev, "memory_get", {"key": "age"})
    if not err.startswith("Error: nothing remembered as 'age'") or "name, plants" not in err:
        raise Exception(err)
    err = _tool(dev, "memory_set", {"key": "x" * 40, "value": 1})
    if not err.startswith("Error: key") or "limit is 32" not in err:
        raise Exception(err)
    err = _tool(dev, "memory_set", {"key": "x", "value": [1]})
    if err != "Error: 'value' must be text, a number or true/false":
        raise Exception(err)
    eq(_tool(dev, "memory_delete", {"key": "name"}), "ok: forgot name")
    eq(_tool(dev, "memory_delete", {"key": "name"})[:6], "Error:")
    eq(Memory().items(), [("plants", 3)])


def test_a_write_the_full_flash_refuses_keeps_the_old_value_and_whose_it_is():
    # the LLM's fact stays the LLM's: a failed write by the owner must not hand its value to the owner
    from wisp import store
    m = _fresh()
    m.set("t", "heater", llm=1)
    m.set("name", "Ada")
    real, store.json = store.json, FullFlash
    try:
        raises(lambda: m.set("t", "fan"), "could not save to flash", "28")
        raises(lambda: m.set("new", 1), "could not save to flash")
        raises(lambda: m.delete("name"), "could not save to flash")
    finally:
        store.json = real
    eq((m.get("t"), m.by_llm("t"), m.get("new"), m.get("name")), ("heater", True, None, "Ada"))
    again = Memory()
    eq((again.items(), again.by_llm("t")), ([("name", "Ada"), ("t", "heater")], True))
    m.set("t", "fan")  # room again: the owner's write lands and is the owner's
    eq((Memory().get("t"), Memory().by_llm("t")), ("fan", False))


def test_a_store_with_junk_in_its_llm_list_still_loads():
    _fresh()
    with open("memory.json", "w") as f:
        f.write('{"v": 1, "facts": [["a", 1], ["b", 2]], "llm": [["a"], "b", 7]}')
    m = Memory()
    eq((m.items(), m.by_llm("a"), m.by_llm("b")), ([("b", 2), ("a", 1)], False, True))


def test_every_fact_can_be_listed_even_one_longer_than_a_page():
    # a tool result is cut at 200 characters: memory_list showed the first few facts and "...",
    # and only 512 bytes of facts ride with each LLM request, so the rest could never be read
    dev = make_device()
    dev.memory = _fresh()
    long_value = "v" * limits.MAX_FACT_VALUE
    keys = ["fact_%02d" % i for i in range(30)]
    for k in keys:
        _tool(dev, "memory_set", {"key": k, "value": long_value if k == "fact_07" else "value of " + k})
    pages = all_pages(lambda name, args: _tool(dev, name, args), "memory_list")
    check(pages[0].startswith("30 facts: "), pages[0])
    seen = "; ".join(pages)
    for k in keys:
        eq(seen.count(k + "="), 1, k)
    check("fact_07=vvvv" in seen, "the long fact is not shown: %r" % seen)
