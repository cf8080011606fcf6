# Home Assistant on the device: the restart button's guard against a retained press, PWM set/
# words, discovery ids for any device id, discovery off meaning nothing is published (and what
# was, cleared), Home Assistant's birth topic whatever the prefix, a dimmer's level kept.
import asyncio
import json
import time

from fakeboard import make_device
from mpcheck import check

from wisp import ha, limits, pins
from wisp.hal.sim import Board

PINS = {"dimmer": {"pin": 25, "mode": "pwm"}, "porch_light": {"pin": 5, "mode": "out"}}


def _events(dev):
    return [json.loads(p)["text"] for t, p, _r, _q in dev.link.sent if t.endswith("/event")]


async def test_a_press_right_after_connecting_is_refused_and_cleared_a_later_one_reboots():
    dev = make_device(PINS)
    await dev.announce()  # a connect: the guard starts now
    await ha.on_set(dev, "_restart", b"reboot")
    check(dev.board.resets == 0 and "restart refused" in _events(dev)[-1], _events(dev))
    check(("wisp/t1/set/_restart", "", True, 1) in dev.link.sent, "retained press not cleared")
    await ha.on_set(dev, "_restart", b"")  # our own clearing coming back: ignored silently
    await ha.on_set(dev, "_restart", b"please")
    check(dev.board.resets == 0 and "wants the payload 'reboot'" in _events(dev)[-1], _events(dev))
    dev.connected_ms = time.ticks_add(time.ticks_ms(), -limits.RESTART_GUARD_MS - 1)
    await ha.on_set(dev, "_restart", b"reboot")
    for _ in range(100):  # system_reboot waits REBOOT_DELAY_MS so its result goes out first
        if dev.board.resets:
            break
        await asyncio.sleep_ms(50)
    check(dev.board.resets == 1 and "rebooting on request" in _events(dev)[-1], (dev.board.resets, _events(dev)))


async def test_pwm_takes_on_off_and_numbers_and_on_returns_to_the_last_brightness():
    dev = make_device(PINS)
    pin = dev.pins["dimmer"]
    await ha.on_set(dev, "dimmer", b"ON")
    check(pin.duty == 100, "ON with no brightness yet is full")
    for word, duty in ((b"30.4", 30), (b"OFF", 0), (b"on", 30), (b"0", 0), (b"ON", 30), (b"99.5", 100)):
        await ha.on_set(dev, "dimmer", word)
        check(pin.duty == duty and dev.link.on("wisp/t1/state/dimmer")[-1] == duty, (word, pin.duty))
    await ha.on_set(dev, "dimmer", b"-3")
    check(pin.duty == 100 and "wants a number 0-100" in _events(dev)[-1], _events(dev))
    for word in (b"-0.9", b"-0.4", b"100.4", b"nan", b"inf"):  # out of range before rounding: refused, not 0/100
        await ha.on_set(dev, "dimmer", b"50")
        await ha.on_set(dev, "dimmer", word)
        check(pin.duty == 50 and "wants a number 0-100" in _events(dev)[-1], (word, pin.duty, _events(dev)[-1]))
        check(dev.link.on("wisp/t1/state/dimmer")[-1] == 50, "the real duty published back")


async def test_an_oversized_set_is_reported_once_not_read_as_an_empty_word():
    from mpcheck import until

    from wisp import app
    dev = make_device(PINS)
    route = app._router(dev, None, None, None)
    for sub in ("set/porch_light", "set/dimmer"):
        route(dev.topic(sub), None, limits.MAX_PAYLOAD + 1)  # what the link hands over for one too big
    await until(lambda: len(_events(dev)) >= 2)
    await asyncio.sleep_ms(100)  # anything a handler would add
    check(len(_events(dev)) == 2 and all("refused: limit is" in e for e in _events(dev)), _events(dev))


async def test_discovery_ids_are_entity_id_slugs_whatever_the_device_id():
    dev = make_device(PINS, dev_id="wisp-A1b2")
    await ha.announce(dev)
    configs = {t: json.loads(p) for t, p, _r, _q in dev.link.sent if t.endswith("/config")}
    light = configs["homeassistant/switch/wisp_wisp-A1b2/porch_light/config"]
    check(light["def_ent_id"] == "switch.wisp_wisp_a1b2_porch_light", light["def_ent_id"])
    check(configs["homeassistant/number/wisp_wisp-A1b2/dimmer/config"]["max"] == 100, "pwm number")


async def test_each_config_goes_out_in_pieces_and_reads_back_whole():
    # ~600 characters whole: one block that a heap fragmented after hours may not have
    dev = make_device({"porch_light": {"pin": 5, "mode": "out"}, "dimmer": {"pin": 19, "mode": "pwm", "ha": "light"},
                       "door": {"pin": 4, "mode": "in", "device_class": "door"}},
                      extra={"sensors": {"room": {"type": "dht22", "pin": 15}}})
    await ha.announce(dev)
    topics = [t for t, _p, _r, _q in dev.link.sent if t.endswith("/config")]
    check(len(topics) >= 8 and all(t in dev.link.pieces for t in topics), topics)
    longest = max((p for t in topics for p in dev.link.pieces[t]), key=len)
    check(len(longest) < 300, "a %d-character piece: %s" % (len(longest), longest))
    light = json.loads("".join(dev.link.pieces["homeassistant/light/wisp_t1/dimmer/config"]))
    check(light["bri_scl"] == 100 and light["dev"]["ids"] == ["wisp_t1"] and light["o"]["name"] == "wisp"
          and light["avty_t"] == "wisp/t1/status", light)


async def test_discovery_off_publishes_nothing_and_no_diagnostics():
    dev = make_device(PINS, extra={"ha": {"discovery": False}})
    await ha.announce(dev)
    check(not [t for t, _p, _r, _q in dev.link.sent if t.startswith("homeassistant/")], dev.link.sent)
    check(ha.diag_period_s(dev) == 0, "diagnostics without discovery")
    check(ha.diag_period_s(make_device(PINS, extra={"ha": {"diagnostics_s": 0}})) == 0, "diagnostics_s 0")
    check(ha.diag_period_s(make_device(PINS)) == limits.DIAG_INTERVAL_S, "default period")


async def test_discovery_short_of_heap_at_a_connect_is_published_a_little_later():
    # beside a first ask a tight heap can fail the discovery configs; entities missing until the
    # next reconnect would be the result without a second try
    dev = make_device(PINS)
    publish, failed = dev.link.publish, []

    async def short_of_heap_once(topic, payload, retain=False, qos=0, wait_ms=0):
        if topic.startswith("homeassistant/") and not failed:
            failed.append(topic)
            raise MemoryError("memory allocation failed, allocating 594 bytes")
        return await publish(topic, payload, retain, qos, wait_ms)
    dev.link.publish = short_of_heap_once
    saved, limits.HA_RETRY_MS = limits.HA_RETRY_MS, 50
    try:
        await dev.announce()
        check(failed and not [t for t, *_ in dev.link.sent if t.endswith("/config")], "the first try should fail")
        check(dev.link.on("wisp/t1/status"), "status and the rest of the announce go on without discovery")
        for _ in range(100):
            if dev.link.on("homeassistant/switch/wisp_t1/porch_light/config"):
                break
            await asyncio.sleep_ms(20)
        check(dev.link.on("homeassistant/switch/wisp_t1/porch_light/config"), "discovery not published again")
    finally:
        limits.HA_RETRY_MS = saved


async def test_discovery_turned_off_removes_the_entities_it_had_announced():
    # the retained configs stayed in the broker, so Home Assistant kept every entity for good
    await ha.announce(make_device(PINS))
    dev = make_device(PINS, extra={"ha": {"discovery": False}})
    await dev.announce()
    cleared = [t for t, p, r, _q in dev.link.sent if r and not p]
    check(len(cleared) > 5 and all(t.startswith("homeassistant/") and t.endswith("/config") for t in cleared),
          cleared)
    check("homeassistant/switch/wisp_t1/porch_light/config" in cleared and
          "homeassistant/button/wisp_t1/diag_restart/config" in cleared, cleared)
    check(dev.link.on("wisp/t1/state/porch_light") == ["OFF"], "the pin's own state stays for the bridge")
    again = make_device(PINS, extra={"ha": {"discovery": False}})
    await again.announce()
    check(not [t for t, *_ in again.link.sent if t.startswith("homeassistant/")], "cleared once, not every boot")


async def test_home_assistant_restarting_gets_the_configs_again_whatever_the_prefix():
    # Home Assistant says online on homeassistant/status (its birth topic), not on <prefix>/status
    from wisp.app import _ha_status_topic, _router
    dev = make_device(PINS, extra={"ha": {"prefix": "ha2"}})
    topic = _ha_status_topic(dev)
    check(topic == "homeassistant/status", topic)
    _router(dev, None, None, topic)("homeassistant/status", b"online", 6)
    for _ in range(100):
        if dev.link.on("ha2/switch/wisp_t1/porch_light/config"):
            break
        await asyncio.sleep_ms(10)
    check(dev.link.on("ha2/switch/wisp_t1/porch_light/config"), "no configs after Home Assistant's birth message")
    moved = make_device(PINS, extra={"ha": {"prefix": "ha2", "status_topic": "ha2/status"}})
    check(_ha_status_topic(moved) == "ha2/status", "ha.status_topic: Home Assistant's birth topic changed")
    check(_ha_status_topic(make_device(PINS, extra={"ha": {"discovery": False}})) is None, "nothing to listen to")


def test_a_dimmer_restored_to_its_last_level_keeps_a_fraction():
    # pwm_set takes 37.5; restore: last saved it and brought the light back at 0
    spec = {"dimmer": {"pin": 25, "mode": "pwm", "ha": "light", "restore": "last"}}
    first = pins.setup(spec, Board(), print)
    check(first["dimmer"].write(37.5) is None, "37.5 refused")
    again = pins.setup(spec, Board(), print)  # a reboot: a new board, the same flash
    check(again["dimmer"].duty == 37.5, again["dimmer"].duty)
    pins.keep_levels(again)  # a reset for memory keeps it too
    warm = pins.setup(spec, Board(), print)
    check(warm["dimmer"].duty == 37.5, warm["dimmer"].duty)


async def test_a_command_or_a_birth_message_leaves_no_home_assistant_code_in_the_heap():
    # wisp.ha stayed loaded after the first set/ command or Home Assistant restart, until the
    # next connect's announce dropped it: ~1 KB of a board's heap, for days
    import sys

    from mpcheck import until

    from wisp import app
    dev = make_device(PINS)
    route = app._router(dev, None, None, "homeassistant/status")
    sys.modules.pop("wisp.ha", None)  # this file's own import: on a board, only what needs it loads it
    route(dev.topic("set/porch_light"), b"ON", 2)
    await until(lambda: dev.link.on("wisp/t1/state/porch_light"))
    await asyncio.sleep_ms(50)
    check("wisp.ha" not in sys.modules, "held after a set/ command")
    route("homeassistant/status", b"online", 6)
    await until(lambda: dev.link.on("homeassistant/switch/wisp_t1/porch_light/config"))
    await asyncio.sleep_ms(50)
    check("wisp.ha" not in sys.modules, "held after Home Assistant's birth message")
