# The pin safety policy: unsafe configs refused at boot with a reason, safe state at boot,
# per-pin rate limit, maximum on-time with automatic off (published), whoever writes the pin.
import asyncio

from hwdevice import make
from mpcheck import check

from wisp import pins, tools
from wisp.hal.sim import Board


def test_unsafe_or_malformed_pins_are_refused_with_reasons_and_never_touched():
    logged = []
    board = Board()
    named = pins.setup({
        "flash": {"pin": 9, "mode": "out"},
        "ghost": {"pin": 20, "mode": "out"},
        "in_only_out": {"pin": 35, "mode": "out"},
        "in_only_pwm": {"pin": 36, "mode": "pwm"},
        "adc2": {"pin": 25, "mode": "adc"},
        "no_adc": {"pin": 5, "mode": "adc"},
        "pulled": {"pin": 39, "mode": "in", "pull": "up"},
        "typo": {"pin": 13, "mode": "out", "max_on": 60},
        "fast_pwm": {"pin": 26, "mode": "pwm", "freq": 100000},
        "stuck_on": {"pin": 27, "mode": "out", "init": 1, "max_on_s": 5},
        "bad_interval": {"pin": 14, "mode": "out", "min_interval_ms": -1},
        "strap": {"pin": 12, "mode": "out"},
        "relay5": {"pin": 5, "mode": "out"},
        "level": {"pin": 32, "mode": "adc"},
        "sensor_in": {"pin": 34, "mode": "in"},
    }, board, logged.append)
    check(sorted(named) == ["level", "relay5", "sensor_in", "strap"], sorted(named))
    text = "\n".join(logged)
    for frag in ("'flash': GPIO9 is reserved", "'ghost': GPIO20 does not exist",
                 "'in_only_out': GPIO35 is input-only", "'in_only_pwm': GPIO36 is input-only",
                 "'adc2': analog input works only on GPIO32-39", "'no_adc': analog input",
                 "'pulled': GPIO39 has no internal pull", "'typo': unknown key 'max_on'",
                 "'fast_pwm': freq must be", "'stuck_on': init 1 cannot go with max_on_s",
                 "'bad_interval': min_interval_ms",
                 "warning: pin 'strap': GPIO12: strapping: high at reset = 1.8 V flash",
                 "warning: pin 'relay5': GPIO5: strapping: PWM during boot"):
        check(frag in text, (frag, logged))
    for num in (9, 20, 35, 36, 25, 13, 26, 27, 14):
        check(num not in board.levels and num not in board.pwms, "refused GPIO%d was touched" % num)


def test_outputs_and_pwm_start_in_their_safe_state():
    dev = make()
    check(dev.board.levels[5] == 0 and dev.board.levels[19] == 0, "outputs not off at boot")
    pwm = dev.board.pwms[25]
    check(pwm.duty_u16() == 0 and pwm.freq() == 1000, "pwm not at duty 0 / configured freq")
    check(dev.pins["dimmer"].state() == "0" and dev.pins["soil"].state() == "0", "state texts")


async def test_rate_limit_refuses_fast_changes_but_never_switching_off():
    dev = make()
    run = tools.run
    check(await run(dev, "gpio_write", {"pin": "porch_light", "value": 1}) == "ok: porch_light=1", "first on")
    check(await run(dev, "gpio_write", {"pin": "porch_light", "value": 0}) == "ok: porch_light=0",
          "switching off must never be rate limited")
    sent = len(dev.link.sent)
    result = await run(dev, "gpio_write", {"pin": "porch_light", "value": 1})
    check(result == "Error: porch_light changed less than 300 ms ago; try later", result)
    result = await run(dev, "gpio_toggle", {"pin": "porch_light"})
    check(result.startswith("Error: porch_light changed less than"), result)
    check(dev.board.levels[5] == 0 and len(dev.link.sent) == sent, "a refused write moved or published")
    check(await run(dev, "gpio_write", {"pin": "porch_light", "value": 0}) == "ok: porch_light=0",
          "writing the current value is not a change")
    await asyncio.sleep_ms(320)
    check(await run(dev, "gpio_write", {"pin": "porch_light", "value": 1}) == "ok: porch_light=1", "after interval")
    check(dev.board.levels[5] == 1, "pin not on")


async def test_max_on_time_switches_off_by_itself_and_publishes_it():
    dev = make()
    check(await tools.run(dev, "gpio_write", {"pin": "heater", "value": 1}) == "ok: heater=1", "on")
    await asyncio.sleep_ms(150)
    await tools.run(dev, "gpio_write", {"pin": "heater", "value": 1})  # on again: does not extend
    await asyncio.sleep_ms(120)
    check(dev.board.levels[19] == 1, "turned off too early")
    await asyncio.sleep_ms(80)
    check(dev.board.levels[19] == 0, "still on after max_on_s")
    check(dev.link.sent[-1] == ("wisp/t1/state/heater", "OFF", True, 1), dev.link.sent[-1:])
    check(any("heater turned off after" in line for line in dev.logged), dev.logged)


async def test_switching_off_early_cancels_the_old_timer():
    dev = make()
    pin = dev.pins["heater"]
    check(pin.write(1) is None, "on")
    await asyncio.sleep_ms(200)
    check(pin.write(0) is None and pin.write(1) is None, "off and on again")
    await asyncio.sleep_ms(200)  # the first timer would have fired at 300 ms
    check(dev.board.levels[19] == 1, "the old timer cut the new on-time short")
    await asyncio.sleep_ms(150)
    check(dev.board.levels[19] == 0, "the new timer did not fire")


async def test_direct_writes_obey_the_same_policy():
    dev = make()
    pin = dev.pins["porch_light"]
    check(pin.write(1) is None, "on")
    check(pin.write(0) is None, "off")
    err = pin.write(1)
    check(err is not None and "less than 300 ms" in err, err)
    check(dev.pins["door"].write(1) == "Error: pin 'door' is not an output", "input written")


async def test_a_plain_on_during_a_pulse_keeps_the_pin_on():
    dev = make()
    relay = dev.pins["relay"]
    check(relay.write(1, None, 100) is None, "pulse")
    check(relay.write(1) is None, "plain on")
    await asyncio.sleep_ms(150)
    check(dev.board.levels[18] == 1, "the pulse end switched off a pin the user turned on")
    heater = dev.pins["heater"]
    check(heater.write(1, None, 5000) is None, "long pulse")
    await asyncio.sleep_ms(350)
    check(dev.board.levels[19] == 0, "a pulse outlived max_on_s")


def test_a_pin_carries_its_checked_spec_and_a_bad_trigger_is_reported_once_at_boot():
    logged = []
    named = pins.setup({
        "door": {"pin": 4, "mode": "in", "routine": "porch_on", "edge": "falling"},
        "bell": {"pin": 16, "mode": "in", "routine": "ring", "edge": "sideways"},
        "lamp": {"pin": 26, "mode": "out", "ha": "light", "confirm": True},
        "fan": {"pin": 18, "mode": "out"},
    }, Board(), logged.append)
    check(sorted(named) == ["bell", "door", "fan", "lamp"], sorted(named))  # a bad trigger keeps the pin
    door, bell, lamp, fan = named["door"], named["bell"], named["lamp"], named["fan"]
    check((door.routine, door.edge) == ("porch_on", "falling"), (door.routine, door.edge))
    check(bell.routine is None, bell.routine)
    check(logged == ["config error: pin 'bell': edge must be rising, falling or both; its routine will not run"],
          logged)
    check((lamp.ha, lamp.confirm, fan.ha, fan.confirm) == ("light", True, "switch", False),
          (lamp.ha, lamp.confirm, fan.ha, fan.confirm))


def test_device_class_and_aliases_are_checked_at_boot_and_carried_by_the_pin():
    logged = []
    named = pins.setup({
        "door": {"pin": 4, "mode": "in", "device_class": "door"},
        "porch_light": {"pin": 16, "mode": "out", "aliases": ["porch lamp", "front light"]},
        "lamp_class": {"pin": 17, "mode": "out", "device_class": "door"},
        "odd_class": {"pin": 18, "mode": "in", "device_class": "portal"},
        "two_words": {"pin": 22, "mode": "in", "device_class": "door open"},  # a class and a word of it
        "bad_alias": {"pin": 19, "mode": "out", "aliases": "porch lamp"},
        "empty_alias": {"pin": 21, "mode": "out", "aliases": [""]},
    }, Board(), logged.append)
    check(sorted(named) == ["door", "porch_light"], (sorted(named), logged))
    check(named["door"].device_class == "door" and named["porch_light"].device_class is None, named)
    check(named["door"].terms == ("open", "closed") and named["porch_light"].terms == ("on", "off"), named)
    check(list(named["porch_light"].aliases) == ["porch lamp", "front light"] and not named["door"].aliases,
          named)
    text = "\n".join(logged)
    for frag in ("'lamp_class': device_class is for inputs", "'odd_class': device_class is for inputs",
                 "'two_words': device_class is for inputs",
                 "'bad_alias': aliases must be a list", "'empty_alias': each alias must be"):
        check(frag in text, (frag, logged))


async def test_outputs_rest_between_switches_by_default_and_config_may_lift_it():
    from fakeboard import make_device

    from wisp import limits
    dev = make_device(pins={"lamp": {"pin": 5, "mode": "out"},
                            "fast": {"pin": 18, "mode": "out", "min_interval_ms": 0}})
    check(dev.pins["lamp"].min_interval_ms == limits.OUT_MIN_INTERVAL_MS, "no default interval for an output")
    results = []
    for value in (1, 0, 1):
        results.append(await tools.run(dev, "gpio_write", {"pin": "lamp", "value": value}))
    check(results[:2] == ["ok: lamp=1", "ok: lamp=0"] and "less than 1000 ms" in results[2], results)
    for value in (1, 0, 1):
        results.append(await tools.run(dev, "gpio_write", {"pin": "fast", "value": value}))
    check(results[3:] == ["ok: fast=1", "ok: fast=0", "ok: fast=1"], results)


async def test_one_run_of_nested_routines_cannot_fan_out_to_many_switches():
    from wisp import limits
    dev = make()  # relay: min_interval_ms 0, so only the fan-out cap stops the toggling
    flip = [{"tool": "gpio_toggle", "args": {"pin": "relay"}}] * 12
    dev.routines.define("flip", flip)
    dev.routines.define("flip2", [{"tool": "routine_run", "args": {"name": "flip"}}] * 12)
    dev.routines.define("flip3", [{"tool": "routine_run", "args": {"name": "flip2"}}] * 12)  # 1,728 toggles
    before = pins.NamedPin.changes
    result = await tools.run(dev, "routine_run", {"name": "flip3"})
    made = pins.NamedPin.changes - before
    check(made == limits.MAX_RUN_SWITCHES and "pin changes in one run is the limit" in result, (made, result))
    # the next run has its own allowance
    check((await tools.run(dev, "routine_run", {"name": "flip"})).startswith("ok: 12 steps"), "a fresh run was stopped")


def test_restore_unit_and_scale_are_checked_at_boot():
    logged = []
    named = pins.setup({
        "held": {"pin": 5, "mode": "out", "restore": "last", "confirm": True},
        "timed": {"pin": 13, "mode": "out", "restore": "on", "max_on_s": 5},
        "odd": {"pin": 14, "mode": "out", "restore": "sometimes"},
        "door": {"pin": 4, "mode": "in", "restore": "on"},
        "volts_out": {"pin": 18, "mode": "out", "unit": "V"},
        "bad_scale": {"pin": 32, "mode": "adc", "scale": [1]},
        "long_unit": {"pin": 33, "mode": "adc", "unit": "furlongs/s"},
        "lamp": {"pin": 19, "mode": "out", "restore": "on"},
        "fader": {"pin": 25, "mode": "pwm", "restore": "on"},
        "tank": {"pin": 34, "mode": "adc", "unit": "%", "scale": [0.025, -2.5]},
    }, Board(), logged.append)
    check(sorted(named) == ["fader", "lamp", "tank"], (sorted(named), logged))
    text = "\n".join(logged)
    for frag in ("'held': restore on/last cannot go with confirm", "'timed': restore on/last cannot",
                 "'odd': restore is for outputs", "'door': restore is for outputs",
                 "'volts_out': unit and scale are for adc", "'bad_scale': scale must be [k, b]",
                 "'long_unit': unit must be 1-8"):
        check(frag in text, "missing %r in %s" % (frag, text))
    check(named["lamp"].state() == "ON" and named["fader"].state() == "100", "restore on: on at boot")


async def test_restore_last_comes_back_after_a_reboot_and_off_stays_off():
    spec = {"lamp": {"pin": 19, "mode": "out", "restore": "last"}, "fader": {"pin": 25, "mode": "pwm",
            "restore": "last"}, "plain": {"pin": 5, "mode": "out"}}
    first = pins.setup(spec, Board(), print)
    check(first["lamp"].write(1) is None and first["fader"].write(35) is None and first["plain"].write(1) is None,
          "writes refused")
    again = pins.setup(spec, Board(), print)  # a reboot: a new board, the same flash
    check((again["lamp"].state(), again["fader"].state(), again["plain"].state()) == ("ON", "35", "OFF"),
          (again["lamp"].state(), again["fader"].state(), again["plain"].state()))
    check(again["fader"].hw.duty_u16() == 35 * 65535 // 100, "duty not applied at boot")
    again["lamp"].write(0)
    check(pins.setup(spec, Board(), print)["lamp"].state() == "OFF", "off is remembered too")



async def test_a_full_flash_cannot_keep_a_restore_last_level_but_the_pin_still_switches_and_pulses():
    # the level saved for `restore: last` raised ENOSPC out of the write: the lamp was on and the
    # answer said it failed; a pulse left it on for good (its off was never armed)
    from mpcheck import FullFlash

    from wisp import store
    dev = make({"lamp": {"pin": 19, "mode": "out", "restore": "last", "min_interval_ms": 0}}, {})
    logged = []
    dev.pins["lamp"].log = logged.append
    real, store.json = store.json, FullFlash
    try:
        said = await tools.run(dev, "gpio_write", {"pin": "lamp", "value": 1})
        check(said == "ok: lamp=1", said)
        await tools.run(dev, "gpio_write", {"pin": "lamp", "value": 0})
        said = await tools.run(dev, "gpio_pulse", {"pin": "lamp", "ms": 50})
        check(said.startswith("ok") and dev.pins["lamp"].read() == 1, said)
        await asyncio.sleep_ms(120)
        check(dev.pins["lamp"].read() == 0, "the pulse never ended")
    finally:
        store.json = real
    errors = [line for line in logged if line.startswith("error: ")]
    check(len(errors) == 4 and errors[0].startswith("error: lamp=1 not kept for after a reboot (restore: last): ")
          and "28" in errors[0], logged)

async def test_a_reset_for_memory_keeps_the_outputs_and_the_boot_after_it_starts_safe_again():
    import json

    from hwdevice import make

    from wisp import app
    from wisp.hal import early
    spec = {"lamp": {"pin": 5, "mode": "out", "min_interval_ms": 0},
            "relay": {"pin": 18, "mode": "out", "init": 1, "min_interval_ms": 0},
            "fader": {"pin": 25, "mode": "pwm"},
            "pump": {"pin": 19, "mode": "out", "max_on_s": 60, "min_interval_ms": 0},
            "heater": {"pin": 13, "mode": "out", "confirm": True, "min_interval_ms": 0},
            "door": {"pin": 4, "mode": "in"}}
    with open("config.json", "w") as f:
        json.dump({"pins": spec}, f)
    dev = make(spec, {})
    for name, level in (("lamp", 1), ("relay", 0), ("fader", 40), ("pump", 1), ("heater", 1)):
        check(dev.pins[name].write(level) is None, name)
    app.restart_for_heap(dev)  # what the link calls when reconnects keep failing for memory
    check(dev.board.resets == 1, "no reset")
    dev.pins["pump"].write(0)  # its auto-off task
    board = Board()
    early.drive(board)  # boot.py, first thing after the reset
    check((board.levels[5], board.levels[18], board.levels[19], board.levels[13], board.levels[25]) == (1, 0, 0, 1, 0),
          ("early levels: lamp, relay, pump (timed: off), heater, fader (pwm starts later)", board.levels))
    logged = []
    again = pins.setup(spec, board, logged.append)
    got = tuple(again[n].state() for n in ("lamp", "relay", "fader", "pump", "heater"))
    check(got == ("ON", "OFF", "40", "OFF", "ON"), got)
    check(again["fader"].hw.duty_u16() == 40 * 65535 // 100, "duty not applied at boot")
    check(any(line.startswith("outputs back at their levels from before the reset: ") and "lamp=1" in line
              for line in logged), logged)
    cold = pins.setup(spec, Board(), print)  # the next boot (a power cut): safe levels again
    got = tuple(cold[n].state() for n in ("lamp", "relay", "fader", "heater"))
    check(got == ("OFF", "ON", "0", "OFF"), got)
    check(sorted(early.safe_levels()) == [(5, 0), (13, 0), (18, 1), (19, 0), (25, 0)], early.safe_levels())
