# Direct commands on wisp/<id>/cmd: one tool, no LLM, a cmd/res for every command.
import asyncio
import json

from fakeboard import make_device

from wisp import limits
from wisp.commands import Commands


async def _results(dev, payloads):
    cmds = Commands(dev)
    for p in payloads:
        cmds.on_cmd(p if isinstance(p, (bytes, type(None))) else json.dumps(p))
    await asyncio.sleep_ms(30)
    return dev.link.on("wisp/t1/cmd/res")


async def test_command_runs_the_tool_and_answers():
    dev = make_device()
    res = await _results(dev, [{"v": 1, "id": "c1", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}}])
    if res != [{"v": 1, "id": "c1", "ok": True, "result": "ok: fan=1"}] or dev.board.levels[18] != 1:
        raise Exception(res)


async def test_the_command_code_is_loaded_only_while_a_command_runs():
    # wisp/command.py is dropped once no command runs: an LLM ask's peak does not sit on it
    import sys
    dev = make_device()
    cmds = Commands(dev)
    if "wisp.command" in sys.modules:
        raise Exception("loaded before any command")
    cmds.on_cmd(json.dumps({"v": 1, "id": "c1", "tool": "gpio_pulse", "args": {"pin": "fan", "ms": 20}}))
    if "wisp.command" not in sys.modules:
        raise Exception("dropped while its command still runs")
    await asyncio.sleep_ms(60)
    if "wisp.command" in sys.modules or dev.link.on("wisp/t1/cmd/res") != [
            {"v": 1, "id": "c1", "ok": True, "result": "ok: fan=1 for 20 ms, then 0"}]:
        raise Exception((dev.link.on("wisp/t1/cmd/res"), "wisp.command" in sys.modules))


async def test_a_command_is_answered_even_when_its_log_line_finds_no_heap():
    # the tool has run: its answer must go out though the log line (args and all) cannot be built
    import wisp.log as wlog
    from wisp import unload
    real = wlog.log

    def no_heap(text):
        raise MemoryError("memory allocation failed, allocating 272 bytes")
    unload("wisp.command")
    wlog.log = no_heap  # what the command code binds when it loads
    try:
        res = await _results(make_device(), [{"v": 1, "id": "m1", "tool": "gpio_write",
                                              "args": {"pin": "fan", "value": 1}}])
    finally:
        wlog.log = real
        unload("wisp.command")
    if res != [{"v": 1, "id": "m1", "ok": True, "result": "ok: fan=1"}]:
        raise Exception(res)


async def test_bad_commands_get_readable_errors():
    dev = make_device()
    res = await _results(dev, [b"nope", [1], {"id": "c2"}, {"id": "c3", "tool": "gpio_write", "args": {"pin": "x"}},
                               {"id": "c4", "tool": "gpio_read", "args": {"pin": "door"}, "v": 2}, None,
                               {"id": "c5", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}, "v": True}])
    texts = [r["result"] for r in res]
    if len(res) != 7 or any(r["ok"] for r in res) or dev.board.levels[18] != 0:
        raise Exception(res)
    for frag in ("not valid JSON", "must be an object", "needs 'tool'", "'x' is not configured", "version",
                 "larger than %d" % limits.MAX_PAYLOAD):
        if not any(frag in t for t in texts):
            raise Exception((frag, texts))
    c5 = [r["result"] for r in res if r["id"] == "c5"]
    if c5 != ["Error: protocol version true not supported (this device speaks v1)"]:
        raise Exception(c5)
    if sorted(r["id"] for r in res if r["id"]) != ["c2", "c3", "c4", "c5"]:
        raise Exception(res)


async def test_a_flood_of_messages_is_bounded_not_turned_into_unbounded_tasks():
    dev = make_device()
    cmds = Commands(dev)
    for i in range(50):  # all arrive before the loop runs anything, as in a burst
        cmds.on_cmd(b"garbage %d" % i)
    if len(dev.outbox.answers) != limits.ANSWER_QUEUE_MAX or dev.dropped != 50 - limits.ANSWER_QUEUE_MAX:
        raise Exception((len(dev.outbox.answers), dev.dropped))
    for i in range(20):  # valid commands each need a task: CMD_MAX_RUNNING at once, the rest refused
        cmds.on_cmd(json.dumps({"id": "ok%d" % i, "tool": "gpio_read", "args": {"pin": "door"}}))
    if dev.spawned != limits.CMD_MAX_RUNNING:
        raise Exception(dev.spawned)
    await asyncio.sleep_ms(30)
    answered = dev.link.on("wisp/t1/cmd/res")
    if len(answered) != limits.ANSWER_QUEUE_MAX + limits.CMD_MAX_RUNNING or dev.spawned != 0 or dev.outbox.answers:
        raise Exception("queued answers and tasks did not finish: %d" % len(answered))
    cmds.on_cmd(json.dumps({"id": "after", "tool": "gpio_read", "args": {"pin": "door"}}))
    await asyncio.sleep_ms(30)
    if dev.link.on("wisp/t1/cmd/res")[-1]["id"] != "after":
        raise Exception("device did not recover after the flood")


async def test_a_burst_of_asks_beyond_the_inbox_gets_every_refusal():
    from wisp.agent import Agent
    dev = make_device()
    agent = Agent(dev)  # not running: the first INBOX_MAX wait, the rest are refused as busy
    for i in range(20):
        agent.on_ask(json.dumps({"id": "b%d" % i, "text": "hello"}))
    await asyncio.sleep_ms(30)
    refused = dev.link.on("wisp/t1/reply")
    if len(refused) != 20 - limits.INBOX_MAX or any("busy" not in r["text"] for r in refused):
        raise Exception(refused)


async def test_memory_and_routines_leave_the_heap_after_each_command_and_come_back_from_flash():
    import sys

    def held(name):
        return name in dev.__dict__ or "wisp." + name in sys.modules

    def cmd(i, tool, **args):
        return {"v": 1, "id": "m%d" % i, "tool": tool, "args": args}
    dev = make_device()
    cmds = Commands(dev)
    steps = [{"tool": "gpio_write", "args": {"pin": "fan", "value": 1}},
             {"tool": "gpio_read", "args": {"pin": "door"}, "as": "door"}]
    for i, c in enumerate([cmd(1, "memory_set", key="owner", value="Ada"), cmd(2, "memory_set", key="pet", value="Rex"),
                           cmd(3, "routine_define", name="fan_on", steps=steps)]):
        cmds.on_cmd(json.dumps(c))
        await asyncio.sleep_ms(10)
        if held("memory") or held("routines"):
            raise Exception("still in the heap after command %d" % (i + 1))
    res = await _results(dev, [cmd(4, "memory_get", key="owner")])  # reorders the facts: kept until saved
    if res[-1]["result"] != "owner=Ada" or not held("memory"):
        raise Exception((res[-1], held("memory")))
    res = await _results(dev, [cmd(5, "memory_list"), cmd(6, "routine_run", name="fan_on")])  # owner read last
    if res[-2]["result"] != "2 facts: owner=Ada; pet=Rex" or res[-1]["result"] != "ok: 2 steps ran; door=1":
        raise Exception(res[-2:])
    if dev.board.levels[18] != 1 or held("routines"):
        raise Exception("the routine did not run from flash, or stayed in the heap")
    cmds.on_cmd(json.dumps(cmd(7, "routine_run", name="fan_on")))  # runs while a quick command ends
    cmds.on_cmd(json.dumps(cmd(8, "gpio_read", pin="door")))
    await asyncio.sleep_ms(0)
    await asyncio.sleep_ms(0)
    if dev.link.on("wisp/t1/cmd/res")[-1]["id"] != "m8" or "routines" not in dev.__dict__:
        raise Exception("a running routine was dropped from under its run")
    await asyncio.sleep_ms(30)
    if held("routines") or dev.link.on("wisp/t1/cmd/res")[-1]["id"] != "m7":
        raise Exception("routines still held after the last run ended")
