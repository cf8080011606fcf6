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


async def test_bad_commands_get_readable_errors():
    dev = make_device()
    res = await _results(dev, [b"nope", [1], {"id": "c2"}, {"id": "c3", "tool": "gpio_write", "args": {"pin": "x"}},
                               {"id": "c4", "tool": "gpio_read", "args": {"pin": "door"}, "v": 2}, None])
    texts = [r["result"] for r in res]
    if len(res) != 6 or any(r["ok"] for r in res):
        raise Exception(res)
    for frag in ("not valid JSON", "must be an object", "needs 'tool'", "'x' is not configured", "version",
                 "larger than %d" % limits.MAX_PAYLOAD):
        if not any(frag in t for t in texts):
            raise Exception((frag, texts))
    if [r["id"] for r in res if r["id"]] != ["c2", "c3", "c4"]:
        raise Exception(res)


async def test_a_flood_of_messages_is_bounded_not_turned_into_unbounded_tasks():
    dev = make_device()
    cmds = Commands(dev)
    for i in range(50):  # all arrive before the loop runs any of their tasks, as in a burst
        cmds.on_cmd(b"garbage %d" % i)
    if dev.spawned != limits.SPAWN_MAX or dev.dropped != 50 - limits.SPAWN_MAX:
        raise Exception((dev.spawned, dev.dropped))
    await asyncio.sleep_ms(30)
    if len(dev.link.on("wisp/t1/cmd/res")) != limits.SPAWN_MAX or dev.spawned != 0:
        raise Exception("spawned tasks did not finish and release their slots")
    cmds.on_cmd(json.dumps({"id": "after", "tool": "gpio_read", "args": {"pin": "door"}}))
    await asyncio.sleep_ms(30)
    if dev.link.on("wisp/t1/cmd/res")[-1]["id"] != "after":
        raise Exception("device did not recover after the flood")
