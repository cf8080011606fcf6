# Per-pin confirmation: the LLM alone never switches a "confirm" pin on; the user's "yes" does.
import asyncio
import json

from fakeboard import make_device

from wisp.agent import Agent

PINS = {"heater": {"pin": 19, "mode": "out", "confirm": True, "min_interval_ms": 0}, "fan": {"pin": 18, "mode": "out"}}


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
    for _ in range(2000):  # up to ~10 s on a busy machine; done as soon as it replies
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
    if not (r["ok"] and r["path"] == "device" and r["text"] == "confirmed: ok: heater=1") or dev.board.levels[19] != 1:
        raise Exception(r)
    await _ask(dev, agent, "a3", "and off again when the fan stops")  # the next ask's context has the "yes"
    task.cancel()
    msgs = [req for req in dev.link.on("wisp/t1/llm/req") if req["round"] == 0][-1]["msgs"]
    if msgs[-5:] != [{"r": "user", "t": "yes"},
                     {"r": "asst", "t": "", "calls": [{"cid": "h1", "tool": "gpio_write",
                                                       "args": {"pin": "heater", "value": 1}}]},
                     {"r": "tool", "cid": "h1", "t": "ok: heater=1"},
                     {"r": "asst", "t": "ok: heater=1"},
                     {"r": "user", "t": "and off again when the fan stops"}]:
        raise Exception(msgs)


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


async def _yes_switches_it_on(dev, agent, task):
    r = await _ask(dev, agent, "yes1", "yes")
    task.cancel()
    if not r["ok"] or dev.board.levels[19] != 1:
        raise Exception("the user's yes did not switch the heater on: %r" % r)


def _held(dev, r):
    if dev.board.levels[19] != 0 or "needs the user's confirmation" not in r["text"]:
        raise Exception("the heater was switched on with no yes: %r" % r)


# The four ways an attacker steering the LLM got a confirm pin on before origins were carried.
async def test_an_llm_routine_with_the_pin_bound_from_memory_is_held():
    dev = _device()
    agent = Agent(dev)
    _bridge(dev, agent, [
        {"cid": "a", "tool": "memory_set", "args": {"key": "t", "value": "heater"}},
        {"cid": "b", "tool": "routine_define", "args": {"name": "warm", "steps": [
            {"tool": "memory_get", "args": {"key": "t"}, "as": "p"},
            {"tool": "gpio_write", "args": {"pin": "$p", "value": 1}}]}},
        {"cid": "c", "tool": "routine_run", "args": {"name": "warm"}}])
    task = asyncio.create_task(agent.run())
    _held(dev, await _ask(dev, agent, "m1", "warm up"))
    await _yes_switches_it_on(dev, agent, task)


async def test_the_owners_routine_run_by_the_llm_is_held():
    dev = _device()
    dev.routines.define("warm", [{"tool": "gpio_write", "args": {"pin": "heater", "value": 1}}])  # the owner's
    from wisp import tools
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "routine_run", "args": {"name": "warm"}}])
    task = asyncio.create_task(agent.run())
    _held(dev, await _ask(dev, agent, "o1", "warm up"))
    await _yes_switches_it_on(dev, agent, task)
    await tools.run(dev, "gpio_write", {"pin": "heater", "value": 0})
    if await tools.run(dev, "routine_run", {"name": "warm"}) != "ok: 1 step ran" or dev.board.levels[19] != 1:
        raise Exception("the owner running the owner's routine was held")


async def test_an_llm_toggle_routine_defined_while_on_is_held_when_run_later():
    dev = _device()
    from wisp import tools
    await tools.run(dev, "gpio_write", {"pin": "heater", "value": 1})  # the owner's heater is on
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "routine_define", "args": {"name": "flip", "steps": [
        {"tool": "gpio_toggle", "args": {"pin": "heater"}}]}}])
    task = asyncio.create_task(agent.run())
    r = await _ask(dev, agent, "g1", "make a flip routine")
    if "saved" not in r["text"]:
        raise Exception(r)
    await tools.run(dev, "gpio_write", {"pin": "heater", "value": 0})
    _bridge(dev, agent, [{"cid": "c", "tool": "routine_run", "args": {"name": "flip"}}])
    _held(dev, await _ask(dev, agent, "g2", "run flip"))
    # run by the owner (a direct command, an input edge): the LLM wrote it, so no one vouches for it
    r = await tools.run(dev, "routine_run", {"name": "flip"})
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception(r)
    # after a reboot the routine is still the LLM's
    from wisp.routines import Routines
    dev.routines = Routines(dev)
    r = await tools.run(dev, "routine_run", {"name": "flip"})
    task.cancel()
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception("after a reboot: %r" % r)


async def test_a_schedule_the_llm_added_cannot_switch_it():
    dev = _device()
    dev.routines.define("warm", [{"tool": "gpio_write", "args": {"pin": "heater", "value": 1}}])  # the owner's
    agent = Agent(dev)
    from wisp import app
    app._add_state(dev, agent)  # the scheduler with the firmware's own fire()
    _bridge(dev, agent, [{"cid": "c", "tool": "schedule_add", "args": {"spec": "every 2s", "routine": "warm",
                                                                        "name": "w"}}])
    task = asyncio.create_task(agent.run())
    r = await _ask(dev, agent, "s1", "warm it every 2 s")
    jobs = dev.sched.jobs()
    if not jobs or "ok: job 'w'" not in r["text"]:
        raise Exception(r)
    await dev.sched._fire(jobs[0])  # what the scheduler does when the job is due
    task.cancel()
    events = [e["text"] for e in dev.link.on("wisp/t1/event")]
    if dev.board.levels[19] != 0 or not any("cannot ask for it" in e for e in events):
        raise Exception("the LLM's schedule switched the heater: %r" % events)
    from wisp.sched import Scheduler
    if not Scheduler(dev, None).jobs()[0].get("llm"):
        raise Exception("the job's origin was not saved")


async def test_the_owners_routine_acting_on_a_fact_the_llm_wrote_cannot_switch_it():
    dev = _device()
    dev.routines.define("warm", [{"tool": "memory_get", "args": {"key": "t"}, "as": "p"},
                                 {"tool": "gpio_write", "args": {"pin": "$p", "value": 1}}])
    from wisp import tools
    await tools.run(dev, "memory_set", {"key": "t", "value": "heater"}, 1)  # as the LLM's call does
    r = await dev.routines.run("warm", "schedule")
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception(r)
    await tools.run(dev, "memory_set", {"key": "t", "value": "heater"})  # the owner says so
    if await dev.routines.run("warm", "schedule") != "ok: 2 steps ran; p=heater" or dev.board.levels[19] != 1:
        raise Exception("the owner's own fact was refused")


# Paths an audit found around the check after the four above were closed.
async def test_a_prompt_the_llm_scheduled_cannot_switch_it_through_the_fast_path():
    dev = _device()
    agent = Agent(dev)
    from wisp import app
    app._add_state(dev, agent)
    _bridge(dev, agent, [{"cid": "c", "tool": "schedule_add",
                          "args": {"spec": "every 2s", "prompt": "turn on the heater", "name": "p"}}])
    task = asyncio.create_task(agent.run())
    await _ask(dev, agent, "p1", "remind me of something")
    await dev.sched._fire(dev.sched.jobs()[0])
    for _ in range(200):
        await asyncio.sleep_ms(5)
        if dev.link.on("wisp/t1/event"):
            break
    task.cancel()
    events = [e["text"] for e in dev.link.on("wisp/t1/event")]
    if dev.board.levels[19] != 0 or not any("cannot ask for it" in e for e in events):
        raise Exception("the LLM's scheduled prompt switched the heater: %r" % events)


async def test_the_owners_scheduled_prompt_still_switches_it_through_the_fast_path():
    dev = _device()
    agent = Agent(dev)
    from wisp import app, tools
    app._add_state(dev, agent)
    await tools.run(dev, "schedule_add", {"spec": "every 2s", "prompt": "turn on the heater", "name": "p"})
    task = asyncio.create_task(agent.run())
    await dev.sched._fire(dev.sched.jobs()[0])
    for _ in range(200):
        await asyncio.sleep_ms(5)
        if dev.board.levels[19]:
            break
    task.cancel()
    if dev.board.levels[19] != 1:
        raise Exception([e["text"] for e in dev.link.on("wisp/t1/event")])


async def test_a_timezone_change_by_the_llm_waits_for_the_users_yes():
    # the zone times the owner's jobs: moving it would fire "heater on at 07:00" when the LLM likes
    dev = _device()
    agent = Agent(dev)
    from wisp import app
    app._add_state(dev, agent)
    zone = "XYZ-9:44:10"
    _bridge(dev, agent, [{"cid": "c", "tool": "timezone_set", "args": {"tz": zone}}])
    task = asyncio.create_task(agent.run())
    r = await _ask(dev, agent, "z1", "I moved, set my timezone")
    if dev.config.get("tz") == zone or "needs the user's confirmation" not in r["text"]:
        raise Exception(r)
    if "[held: timezone_set tz=XYZ-9:44:10; answer yes within" not in r["text"]:
        raise Exception("the device did not say what it holds: %r" % r["text"])
    r = await _ask(dev, agent, "z2", "yes")
    task.cancel()
    if not r["ok"] or dev.config.get("tz") != zone:
        raise Exception(r)
    from wisp import tools
    r = await tools.run(dev, "timezone_set", {"tz": "UTC0"}, 2)
    if dev.config.get("tz") != zone or "cannot ask for it" not in r:
        raise Exception("a schedule of the LLM changed the zone: %r" % r)


async def test_the_device_says_what_it_holds_whatever_the_llm_writes():
    dev = _device()
    agent = Agent(dev)

    def seen(topic, payload):  # a model that holds "heater on" and asks about something else
        if topic.endswith("/llm/req"):
            req = json.loads(payload)
            msg = {"v": 1, "id": req["id"], "round": req["round"], "seq": 0, "done": True}
            if req["round"] == 0:
                msg["calls"] = [{"cid": "c", "tool": "gpio_write", "args": {"pin": "heater", "value": 1}}]
            else:
                msg["text"] = "May I switch the heater OFF? Say yes."
            asyncio.create_task(_later(agent, msg))
    dev.link.on_publish = seen
    task = asyncio.create_task(agent.run())
    r = await _ask(dev, agent, "h1", "it is too warm")
    task.cancel()
    if not r["text"].endswith("[held: gpio_write pin=heater value=1; answer yes within 60 s to run it]"):
        raise Exception(r["text"])


async def test_a_backup_restore_keeps_what_the_llm_wrote_as_the_llms():
    dev = _device()
    agent = Agent(dev)
    from wisp import app, backup, tools
    app._add_state(dev, agent)
    dev.routines.define("warm", [{"tool": "gpio_write", "args": {"pin": "heater", "value": 1}}])  # the owner's
    await tools.run(dev, "schedule_add", {"spec": "every 5s", "routine": "warm", "name": "w"}, 1)
    await tools.run(dev, "memory_set", {"key": "t", "value": "heater"}, 1)
    await tools.run(dev, "routine_define", {"name": "llm_one", "steps": [
        {"tool": "gpio_write", "args": {"pin": "heater", "value": 1}}]}, 1)
    doc = json.loads(json.dumps(backup.export(dev)))  # to the file and back
    if not backup.restore(dev, doc).startswith("ok: restored"):
        raise Exception("restore refused")
    await dev.sched._fire(dev.sched.jobs()[0])
    r = await dev.routines.run("llm_one", "cmd")
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r or not dev.memory.by_llm("t"):
        raise Exception("a restore turned the LLM's job, routine or fact into the owner's: %r" % r)
    doc["llm_routines"] = "llm_one"
    if "llm_routines must be a list of names" not in (backup.check(dev, doc) or ""):
        raise Exception(backup.check(dev, doc))


async def test_a_new_pwm_frequency_from_the_llm_on_a_confirm_pin_is_held():
    # a servo or valve moves when its frequency changes at the same duty
    pins = {"valve": {"pin": 21, "mode": "pwm", "confirm": True, "freq": 50, "min_interval_ms": 0}}
    dev = make_device(pins=pins)
    from wisp import tools
    await tools.run(dev, "pwm_set", {"pin": "valve", "duty_percent": 8})  # the owner
    r = await tools.run(dev, "pwm_set", {"pin": "valve", "duty_percent": 8, "freq": 100}, 2)
    if dev.pins["valve"].freq != 50 or "cannot ask for it" not in r:
        raise Exception(r)
    r = await tools.run(dev, "pwm_set", {"pin": "valve", "duty_percent": 8, "freq": 100}, 1)
    if dev.pending[:2] != ("pwm_set", {"pin": "valve", "duty_percent": 8, "freq": 100}):
        raise Exception(dev.pending)
    if (await tools.run(dev, "pwm_set", {"pin": "valve", "duty_percent": 8, "freq": 50}, 2)).startswith("Error"):
        raise Exception("the same frequency and duty is no change and needs no yes")


async def test_a_list_or_a_condition_reading_what_the_llm_wrote_acts_for_the_llm():
    dev = _device()
    from wisp import tools
    dev.routines.define("by_list", [{"tool": "memory_list", "as": "p", "pick": "t"},
                                    {"tool": "gpio_write", "args": {"pin": "$p", "value": 1}}])
    dev.routines.define("by_if", [{"tool": "memory_get", "args": {"key": "mode"}, "as": "m"},
                                  {"tool": "gpio_write", "args": {"pin": "heater", "value": 1},
                                   "if": ["m", "==", "warm"]}])
    await tools.run(dev, "memory_set", {"key": "t", "value": "heater"}, 1)
    await tools.run(dev, "memory_set", {"key": "mode", "value": "warm"}, 1)
    for name in ("by_list", "by_if"):
        r = await dev.routines.run(name, "schedule")
        if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
            raise Exception("%s: %r" % (name, r))
    await tools.run(dev, "memory_set", {"key": "mode", "value": "warm"})  # the owner says so
    if not (await dev.routines.run("by_if", "schedule")).startswith("ok") or dev.board.levels[19] != 1:
        raise Exception("the owner's own fact was refused")


def test_the_llm_cannot_publish_to_any_topic_the_device_listens_on():
    from wisp.tools import publish
    dev = _device()
    for suffix in ("ota/offer", "ota/chunk", "log/get", "cmd", "set/fan", "ask", "llm/res", "avail", "diag"):
        if publish.refusal(dev, "wisp/t1/" + suffix) is None:
            raise Exception("wisp/t1/%s is open to the LLM" % suffix)


async def test_the_llm_cannot_keep_on_a_pulse_the_owner_started():
    # the owner pulses the heater for 300 ms; an LLM write of "on" (or a longer pulse) while it is
    # still on is no change of level, but it cancels or moves the pulse's off: held like an "on"
    dev = _device()
    from wisp import tools
    for call in (("gpio_write", {"pin": "heater", "value": 1}), ("gpio_pulse", {"pin": "heater", "ms": 5000})):
        if not (await tools.run(dev, "gpio_pulse", {"pin": "heater", "ms": 300})).startswith("ok"):
            raise Exception("the owner's pulse was refused")
        r = await tools.run(dev, call[0], call[1], 2)
        await asyncio.sleep_ms(500)
        if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
            raise Exception("%s from the LLM kept the owner's pulse on: %r" % (call[0], r))
    await tools.run(dev, "gpio_pulse", {"pin": "heater", "ms": 300})
    r = await tools.run(dev, "gpio_write", {"pin": "heater", "value": 0}, 2)  # off is never held
    if dev.board.levels[19] != 0 or not r.startswith("ok"):
        raise Exception(r)


async def test_the_llm_cannot_retune_a_confirm_pwm_pin_while_it_is_off():
    # at duty 0 a new frequency moves nothing yet, but the owner's next "ON" (Home Assistant turns
    # it back on at its last duty) then drives the servo or valve to where the LLM chose
    pins = {"valve": {"pin": 21, "mode": "pwm", "confirm": True, "freq": 50, "min_interval_ms": 0}}
    dev = make_device(pins=pins)
    from wisp import tools
    r = await tools.run(dev, "pwm_set", {"pin": "valve", "duty_percent": 0, "freq": 100}, 2)
    if dev.pins["valve"].freq != 50 or "cannot ask for it" not in r:
        raise Exception(r)
    if not (await tools.run(dev, "pwm_set", {"pin": "valve", "duty_percent": 0}, 2)).startswith("ok"):
        raise Exception("switching off was held")


async def test_a_routine_or_schedule_of_the_llm_cannot_reboot_the_device():
    # "reboot only when the user asks": a job the LLM added has no user, and every minute it
    # would reset the board (outputs back at their boot levels) until someone removed it
    dev = _device()
    from wisp import app, limits, tools
    app._add_state(dev, Agent(dev))
    old, limits.REBOOT_DELAY_MS = limits.REBOOT_DELAY_MS, 10
    try:
        r = await tools.run(dev, "routine_define", {"name": "boot", "steps": [
            {"tool": "system_reboot", "args": {"confirm": "reboot"}}]}, 1)
        await tools.run(dev, "schedule_add", {"spec": "every 1m", "routine": "boot", "name": "b"}, 1)
        await dev.sched._fire(dev.sched.jobs()[0])
        r = await tools.run(dev, "system_reboot", {"confirm": "reboot"}, 2)  # a prompt it scheduled
        await asyncio.sleep_ms(100)
        if dev.board.resets or "not rebooting" not in r:
            raise Exception("the LLM's job rebooted the board: %r" % r)
        if not (await tools.run(dev, "system_reboot", {"confirm": "reboot"}, 1)).startswith("ok"):
            raise Exception("a user's ask could not reboot")
    finally:
        limits.REBOOT_DELAY_MS = old


async def test_a_yes_sent_before_the_device_held_anything_confirms_nothing():
    # a "yes" already waiting in the inbox (queued with the request, or held back and delivered
    # later) was not said to the held call: only one received after the hold confirms it
    dev = _device()
    agent = Agent(dev)
    _bridge(dev, agent, [{"cid": "c", "tool": "gpio_write", "args": {"pin": "heater", "value": 1}}])
    agent.on_ask(json.dumps({"id": "q1", "text": "warm up the room"}))
    agent.on_ask(json.dumps({"id": "q2", "text": "yes"}))
    task = asyncio.create_task(agent.run())
    for _ in range(2000):
        await asyncio.sleep_ms(5)
        if len(dev.link.on("wisp/t1/reply")) >= 2:
            break
    if dev.board.levels[19] != 0:
        task.cancel()
        raise Exception("a yes queued before the hold switched the heater: %r" % dev.link.on("wisp/t1/reply"))
    await _yes_switches_it_on(dev, agent, task)  # the LLM holds it again; a yes now confirms


async def test_an_owners_routine_reading_a_pin_the_llm_set_acts_for_the_llm():
    # the fan's level is what the LLM wrote, as a fact would be: "heater on when the fan is on"
    # must not let the LLM switch the heater by switching the fan
    dev = _device()
    from wisp import tools
    dev.routines.define("follow", [{"tool": "gpio_read", "args": {"pin": "fan"}, "as": "f"},
                                   {"tool": "gpio_write", "args": {"pin": "heater", "value": 1}, "if": ["f", "==", 1]}])
    await tools.run(dev, "gpio_write", {"pin": "fan", "value": 1}, 1)  # the LLM's call in an ask
    r = await dev.routines.run("follow", "schedule")
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception("the LLM switched the heater through the fan: %r" % r)
    await tools.run(dev, "gpio_write", {"pin": "fan", "value": 1})  # the owner says so
    if not (await dev.routines.run("follow", "schedule")).startswith("ok") or dev.board.levels[19] != 1:
        raise Exception("the owner's own fan was refused")


async def test_a_toggle_of_a_pin_the_llm_set_keeps_its_mark():
    # toggling reads the level the LLM set: what it gives back, and the pin's new level, are still
    # the LLM's decision, so "heater as the lamp" cannot switch the heater when the LLM sets the lamp
    pins = dict(PINS, lamp={"pin": 17, "mode": "out", "min_interval_ms": 0})
    dev = make_device(pins=pins)
    from wisp import tools
    dev.routines.define("flip", [{"tool": "gpio_toggle", "args": {"pin": "lamp"}, "as": "v"},
                                 {"tool": "gpio_write", "args": {"pin": "heater", "value": "$v"}}])
    dev.routines.define("follow", [{"tool": "gpio_read", "args": {"pin": "lamp"}, "as": "f"},
                                   {"tool": "gpio_write", "args": {"pin": "heater", "value": 1}, "if": ["f", "==", 1]}])
    await tools.run(dev, "gpio_write", {"pin": "lamp", "value": 0}, 1)  # the LLM's call in an ask
    r = await dev.routines.run("flip", "schedule")
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception("the LLM switched the heater through a toggle: %r" % r)
    r = await dev.routines.run("follow", "schedule")  # the lamp is on now, toggled from the LLM's off
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception("the toggled level lost the LLM's mark: %r" % r)
    await tools.run(dev, "gpio_write", {"pin": "lamp", "value": 0})  # the owner says so
    if not (await dev.routines.run("flip", "schedule")).startswith("ok") or dev.board.levels[19] != 1:
        raise Exception("the owner's own lamp was refused")


async def test_a_name_left_unbound_by_what_the_llm_wrote_is_the_llms():
    # a step skipped by a condition on the LLM's fact, or one acting for it that failed, binds
    # nothing: a later condition on that name ("not lamp == 0" holds for an unbound name) is
    # still the LLM's decision
    pins = dict(PINS, lamp={"pin": 17, "mode": "out", "min_interval_ms": 0})
    dev = make_device(pins=pins)
    from wisp import tools
    heat = {"tool": "gpio_write", "args": {"pin": "heater", "value": 1}, "if": {"not": ["y", "==", 0]}}
    dev.routines.define("skip", [{"tool": "memory_get", "args": {"key": "m"}, "as": "m"},
                                 {"tool": "gpio_read", "args": {"pin": "lamp"}, "as": "y", "if": ["m", "==", "cold"]},
                                 heat])
    dev.routines.define("fail", [{"tool": "memory_get", "args": {"key": "m"}, "as": "m"},
                                 {"tool": "memory_get", "args": {"key": "$m"}, "as": "y", "continue": True},
                                 heat])
    await tools.run(dev, "memory_set", {"key": "m", "value": "warm"}, 1)  # the LLM's call in an ask
    for name in ("skip", "fail"):
        r = await dev.routines.run(name, "schedule")
        if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
            raise Exception("%s: the LLM switched the heater by leaving a name unbound: %r" % (name, r))
    await tools.run(dev, "memory_set", {"key": "m", "value": "warm"})  # the owner says so
    if not (await dev.routines.run("skip", "schedule")).startswith("ok") or dev.board.levels[19] != 1:
        raise Exception("the owner's own fact was refused")


async def test_a_level_the_llm_set_is_still_its_after_a_reset():
    # a `restore: last` output, or any output kept over a reset for memory, comes back at the
    # level the LLM set (the LLM may reboot from an ask): it must come back with its mark
    from wisp import pins as pins_mod
    from wisp import tools
    pins = dict(PINS, lamp={"pin": 17, "mode": "out", "min_interval_ms": 0, "restore": "last"},
                fan={"pin": 18, "mode": "out", "min_interval_ms": 0})
    follow = lambda pin: [{"tool": "gpio_read", "args": {"pin": pin}, "as": "f"},  # noqa: E731
                          {"tool": "gpio_write", "args": {"pin": "heater", "value": 1}, "if": ["f", "==", 1]}]
    for pin, keep in (("lamp", False), ("fan", True)):
        dev = make_device(pins=pins)
        await tools.run(dev, "gpio_write", {"pin": pin, "value": 1}, 1)  # the LLM's call in an ask
        if keep:
            pins_mod.keep_levels(dev.pins)
        dev = make_device(pins=pins)  # the board reset
        dev.routines.define("follow", follow(pin))
        r = await dev.routines.run("follow", "schedule")
        if dev.pins[pin].read() != 1 or dev.board.levels[19] != 0 or "cannot ask for it" not in r:
            raise Exception("%s: after a reset the LLM's level switched the heater: %r" % (pin, r))
        await tools.run(dev, "gpio_write", {"pin": pin, "value": 1})  # the owner says so
        if keep:
            pins_mod.keep_levels(dev.pins)
        dev = make_device(pins=pins)
        dev.routines.define("follow", follow(pin))
        if not (await dev.routines.run("follow", "schedule")).startswith("ok") or dev.board.levels[19] != 1:
            raise Exception("%s: the owner's level was refused after a reset" % pin)


async def test_an_inner_routine_the_llm_made_fail_leaves_the_llms_name():
    # the owner's inner routine fails on the LLM's fact (a pin name that is no pin): the outer
    # routine's name for its summary stays unbound, and "not x == 0" holds for it
    dev = _device()
    from wisp import tools
    dev.routines.define("inner", [{"tool": "memory_get", "args": {"key": "p"}, "as": "p"},
                                  {"tool": "gpio_read", "args": {"pin": "$p"}, "as": "x"}])
    dev.routines.define("outer", [{"tool": "routine_run", "args": {"name": "inner"}, "as": "x", "continue": True},
                                  {"tool": "gpio_write", "args": {"pin": "heater", "value": 1},
                                   "if": {"not": ["x", "==", 0]}}])
    await tools.run(dev, "memory_set", {"key": "p", "value": "nothing"}, 1)  # the LLM's call in an ask
    r = await dev.routines.run("outer", "schedule")
    if dev.board.levels[19] != 0 or "cannot ask for it" not in r:
        raise Exception("the LLM switched the heater by failing an inner routine: %r" % r)


async def test_home_assistants_on_brings_back_the_llms_duty_as_the_llms():
    # "ON" with no brightness turns a dimmer back on at its last duty: when the LLM chose that
    # duty, the owner's routine "valve as the dimmer" must not move the confirm valve to it
    from wisp import ha_set, tools
    dev = make_device(pins={"valve": {"pin": 21, "mode": "pwm", "confirm": True, "min_interval_ms": 0},
                            "dim": {"pin": 22, "mode": "pwm", "min_interval_ms": 0}})
    dev.routines.define("follow", [{"tool": "gpio_read", "args": {"pin": "dim"}, "as": "d"},
                                   {"tool": "pwm_set", "args": {"pin": "valve", "duty_percent": "$d"}}])
    for off in (False, True):  # ON while at the LLM's duty, and ON after an off
        await tools.run(dev, "pwm_set", {"pin": "dim", "duty_percent": 70}, 1)  # the LLM's call in an ask
        if off:
            await ha_set.on_set(dev, "dim", b"OFF")
        await ha_set.on_set(dev, "dim", b"ON")
        r = await dev.routines.run("follow", "schedule")
        if dev.pins["dim"].duty != 70 or dev.pins["valve"].duty != 0 or "cannot ask for it" not in r:
            raise Exception("off=%s: the LLM's duty moved the valve: %r" % (off, r))
    await ha_set.on_set(dev, "dim", b"70")  # the owner's own duty
    if not (await dev.routines.run("follow", "schedule")).startswith("ok") or dev.pins["valve"].duty != 70:
        raise Exception("the owner's duty was refused")
