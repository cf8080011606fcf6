# Per-pin confirmation: the LLM alone never switches a "confirm" pin on; the user's "yes" does.
import asyncio
import json

from fakeboard import make_device

from wisp.agent import Agent

PINS = {"heater": {"pin": 19, "mode": "out", "confirm": True}, "fan": {"pin": 18, "mode": "out"}}


def _device():
    dev = make_device(pins=PINS)
    dev.config["pins"] = PINS
    return dev


def _bridge(dev, agent, calls_for_round0):
    def seen(topic, payload):
        if topic.endswith("/llm/req"):
            req = json.loads(payload)
            base = {"v": 1, "id": req["id"], "round": req["round"], "seq": 0, "done": True}
            if req["round"] == 0:
                base["calls"] = calls_for_round0
            else:
                base["text"] = req["msgs"][-1]["t"]  # the LLM relays the tool result
            asyncio.create_task(_later(agent, base))
    dev.link.on_publish = seen


async def _later(agent, msg):
    await asyncio.sleep_ms(1)
    agent.on_llm_res(json.dumps(msg))


async def _ask(dev, agent, ask_id, text):
    before = len(dev.link.on("wisp/t1/reply"))
    agent.on_ask(json.dumps({"id": ask_id, "text": text}))
    for _ in range(200):
        await asyncio.sleep_ms(5)
        if len(dev.link.on("wisp/t1/reply")) > before:
            break
    return dev.link.on("wisp/t1/reply")[-1]


async def test_llm_call_is_held_until_the_user_says_yes():
    dev = _device()
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "gpio_write", "args": {"pin": "heater", "value": 1}}])
    task = asyncio.create_task(agent.run())
    r = await _ask(dev, agent, "a1", "warm up the room")
    if "needs the user's confirmation" not in r["text"] or dev.board.levels[19] != 0:
        raise Exception(r)
    r = await _ask(dev, agent, "a2", "yes")
    task.cancel()
    if not (r["ok"] and r["path"] == "device" and r["text"] == "confirmed: ok: heater=1") or dev.board.levels[19] != 1:
        raise Exception(r)


async def test_any_other_answer_or_a_late_yes_drops_the_held_call():
    dev = _device()
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "gpio_write", "args": {"pin": "heater", "value": 1}}])
    task = asyncio.create_task(agent.run())
    await _ask(dev, agent, "b1", "warm up the room")
    await _ask(dev, agent, "b2", "turn on the fan")       # something else: the held call is gone
    r = await _ask(dev, agent, "b3", "yes")                # goes to the LLM, which holds it again
    if dev.board.levels[19] != 0 or "needs the user's confirmation" not in r["text"]:
        raise Exception(r)
    tool, args, _deadline = dev.pending
    dev.pending = (tool, args, 0)                          # make it older than CONFIRM_WINDOW_S
    await _ask(dev, agent, "b4", "yes")
    task.cancel()
    if dev.board.levels[19] != 0:
        raise Exception("a late yes switched the heater")


async def test_switching_off_plain_pins_and_direct_commands_need_no_confirmation():
    dev = _device()
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}},
                         {"cid": "d", "tool": "gpio_write", "args": {"pin": "heater", "value": 0}}])
    task = asyncio.create_task(agent.run())
    await _ask(dev, agent, "c1", "fan on, heater off")
    task.cancel()
    if dev.board.levels[18] != 1 or getattr(dev, "pending", None) is not None:
        raise Exception("a safe or unmarked call was held")
    from wisp import tools
    if await tools.run(dev, "gpio_write", {"pin": "heater", "value": 1}) != "ok: heater=1":
        raise Exception("a direct command was held")


async def test_llm_may_not_define_a_routine_that_switches_a_confirm_pin():
    dev = _device()
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "routine_define", "args": {"name": "warm", "steps": [
        {"tool": "gpio_write", "args": {"pin": "heater", "value": 1}}]}}])
    task = asyncio.create_task(agent.run())
    r = await _ask(dev, agent, "d1", "make a routine to warm up")
    task.cancel()
    if "a routine from the LLM may not switch it" not in r["text"] or dev.routines.list():
        raise Exception(r)
