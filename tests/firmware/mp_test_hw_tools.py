# The hardware tool families through the registry, as the LLM calls them: each happy path,
# and each refusal as a readable "Error:" that moves nothing and publishes nothing.
import asyncio
import json

from fakeboard import manifest
from hwdevice import make, set_inputs
from mpcheck import check

from wisp import limits, tools


async def _ok(dev, name, args, expected=None):
    result = await tools.run(dev, name, args)
    check(not result.startswith("Error"), "%s%r -> %s" % (name, args, result))
    check(expected is None or result == expected, "%s: %r != %r" % (name, result, expected))
    return result


async def _refused(dev, name, args, *fragments):
    before = (dict(dev.board.levels), [(n, p.duty_u16(), p.freq()) for n, p in dev.board.pwms.items()],
              len(dev.link.sent))
    result = await tools.run(dev, name, args)
    check(result.startswith("Error:"), "%s%r should be refused, got %r" % (name, args, result))
    for frag in fragments:
        check(frag in result, "%r not in %r" % (frag, result))
    after = (dict(dev.board.levels), [(n, p.duty_u16(), p.freq()) for n, p in dev.board.pwms.items()],
             len(dev.link.sent))
    check(before == after, "%s%r was refused but moved or published something" % (name, args))
    return result


async def test_gpio_toggle_and_pulse():
    dev = make()
    await _ok(dev, "gpio_toggle", {"pin": "relay"}, "ok: relay=1")
    await _ok(dev, "gpio_toggle", {"pin": "relay"}, "ok: relay=0")
    await _ok(dev, "gpio_pulse", {"pin": "relay", "ms": 120}, "ok: relay=1 for 120 ms, then 0")
    check(dev.board.levels[18] == 1 and dev.link.sent[-1][1] == "ON", "pulse did not switch on at once")
    await asyncio.sleep_ms(80)
    check(dev.board.levels[18] == 1, "pulse ended early")
    await asyncio.sleep_ms(80)
    check(dev.board.levels[18] == 0, "pulse never ended")
    check(dev.link.sent[-1] == ("wisp/t1/state/relay", "OFF", True, 1), dev.link.sent[-1])
    await _refused(dev, "gpio_pulse", {"pin": "relay", "ms": 0}, "ms", "1-%d" % limits.MAX_PULSE_MS)
    await _refused(dev, "gpio_pulse", {"pin": "relay", "ms": limits.MAX_PULSE_MS + 1}, "ms")
    await _refused(dev, "gpio_pulse", {"pin": "door", "ms": 100}, "'door' is not an output")
    await _refused(dev, "gpio_toggle", {"pin": "dimmer"}, "'dimmer' is not an output")


async def test_pwm_set_duty_and_frequency():
    dev = make()
    await _ok(dev, "pwm_set", {"pin": "dimmer", "duty_percent": 40}, "ok: dimmer=40% at 1000 Hz")
    pwm = dev.board.pwms[25]
    check(pwm.duty_u16() == 26214 and dev.link.sent[-1] == ("wisp/t1/state/dimmer", "40", True, 1),
          (pwm.duty_u16(), dev.link.sent))
    await _ok(dev, "pwm_set", {"pin": "dimmer", "duty_percent": 100, "freq": 25000}, "ok: dimmer=100% at 25000 Hz")
    check(pwm.duty_u16() == 65535 and pwm.freq() == 25000, "full duty / new freq not applied")
    await _refused(dev, "pwm_set", {"pin": "dimmer", "duty_percent": 101}, "duty_percent", "0-100")
    await _refused(dev, "pwm_set", {"pin": "dimmer", "duty_percent": "50"}, "0-100")
    await _refused(dev, "pwm_set", {"pin": "dimmer", "duty_percent": 5, "freq": 50000}, "freq", "1-40000")
    await _refused(dev, "pwm_set", {"pin": "porch_light", "duty_percent": 5}, "'porch_light' is not a PWM output")
    await _ok(dev, "pwm_set", {"pin": "dimmer", "duty_percent": 37.5}, "ok: dimmer=37.5% at 25000 Hz")
    await _ok(dev, "gpio_read", {"pin": "dimmer"}, "dimmer=37.5")  # as set, and as its state topic says
    await _ok(dev, "pwm_set", {"pin": "dimmer", "duty_percent": 0}, "ok: dimmer=0% at 25000 Hz")
    check(pwm.duty_u16() == 0 and dev.link.sent[-1][1] == "0", "duty 0 is off")


async def test_adc_read_reports_raw_and_volts():
    dev = make()
    set_inputs({"adc": {"34": 2048}})
    await _ok(dev, "adc_read", {"pin": "soil"}, "soil: raw=2048 of 4095, volts=1.65 V")
    set_inputs({"adc": {"34": 4095}})
    await _ok(dev, "adc_read", {"pin": "soil"}, "soil: raw=4095 of 4095, volts=3.30 V")
    await _refused(dev, "adc_read", {"pin": "door"}, "'door' is not an analog input")
    set_inputs(None)


async def test_i2c_scan_read_write_write_read():
    dev = make()
    set_inputs({"i2c": {"0x76": {"0xD0": [0x60], "0xF7": [1, 2, 3]}, "0x3c": {}}})
    await _ok(dev, "i2c_scan", {}, "i2c: 2 found: 0x3c, 0x76")
    await _ok(dev, "i2c_read", {"addr": 0x76, "reg": 0xD0, "n": 1}, "0x76 reg 0xd0: 60 (hex)")
    await _ok(dev, "i2c_read", {"addr": 0x76, "reg": 0xF7, "n": 4}, "0x76 reg 0xf7: 01 02 03 00 (hex)")
    await _ok(dev, "i2c_write", {"addr": 0x76, "reg": 0xF4, "data": [0x27, 255]}, "ok: wrote 2 bytes to 0x76")
    await _ok(dev, "i2c_write_read", {"addr": 0x76, "data": [0xF4], "n": 2}, "0x76: 27 ff (hex)")
    await _ok(dev, "i2c_write", {"addr": 0x76, "data": [0xD0]}, "ok: wrote 1 bytes to 0x76")
    await _ok(dev, "i2c_read", {"addr": 0x76, "n": 1}, "0x76: 60 (hex)")
    await _refused(dev, "i2c_read", {"addr": 0x50, "n": 1}, "no answer from I2C device 0x50")
    await _refused(dev, "i2c_read", {"addr": 0x78, "n": 1}, "addr", "8-119")
    await _refused(dev, "i2c_read", {"addr": 0x76, "n": limits.I2C_MAX_BYTES + 1},
                   "must be an integer 1-%d" % limits.I2C_MAX_BYTES)
    await _refused(dev, "i2c_write", {"addr": 0x76, "data": [1, 256]}, "0-255")
    await _refused(dev, "i2c_write", {"addr": 0x76, "data": []}, "list of 1-")
    await _refused(dev, "i2c_write", {"addr": 0x76, "data": "hello"}, "list of")
    await _refused(dev, "i2c_write_read", {"addr": 0x76, "data": [1]}, "'n' required")
    set_inputs({})
    await _ok(dev, "i2c_scan", {}, "i2c: no devices found (check wiring and pull-ups)")
    set_inputs(None)


async def test_i2c_bus_config_errors_are_readable():
    dev = make(extra={})
    await _refused(dev, "i2c_scan", {}, "no I2C bus configured", "\"i2c\"")
    dev = make(extra={"i2c": {"scl": 5, "sda": 21}})
    await _refused(dev, "i2c_scan", {}, "GPIO5 is already used by 'porch_light'")
    dev = make(extra={"i2c": {"scl": 35, "sda": 21}})
    await _refused(dev, "i2c_scan", {}, "GPIO35 is input-only")
    dev = make(extra={"i2c": {"scl": 7, "sda": 21}})
    await _refused(dev, "i2c_scan", {}, "GPIO7 is reserved")
    dev = make(extra={"i2c": {"scl": 22, "sda": 21, "freq": 5}})
    await _refused(dev, "i2c_scan", {}, "freq")


async def test_sensor_read_dht_and_chip():
    dev = make()
    set_inputs({"dht": {"15": [21.5, 40]}, "chip_temp": 47.0})
    await _ok(dev, "sensor_read", {"name": "room"}, "room: temp=21.5 C, hum=40 %")
    await _ok(dev, "sensor_read", {"name": "chip"}, "chip: temp=47.0 C")
    await _refused(dev, "sensor_read", {"name": "attic"}, "sensor 'attic' (dht11 on GPIO16) did not answer")
    await _refused(dev, "sensor_read", {"name": "garage"}, "attic, room, chip")
    set_inputs({"dht": {"15": [30, 80]}})
    await _ok(dev, "sensor_read", {"name": "room"}, "room: temp=21.5 C, hum=40 %")  # within the DHT's rest time
    dev = make(extra={"sensors": {"room": {"type": "bme280", "pin": 15}, "hall": {"type": "dht22", "pin": 36}}})
    await _refused(dev, "sensor_read", {"name": "room"}, "type must be dht11 or dht22")
    await _refused(dev, "sensor_read", {"name": "hall"}, "GPIO36 is input-only")
    set_inputs(None)


async def test_system_info_and_health():
    dev = make()
    info = await _ok(dev, "system_info", {})
    for frag in ("fw ", "board sim", "id t1", "up 0 m", "B free", "rssi -50 dBm", "boots %d" % dev.boots):
        check(frag in info, (frag, info))
    health = await _ok(dev, "system_health", {})
    check(health.startswith("ok: heap") and "rssi -50 dBm" in health, health)
    set_inputs({"rssi": -91})
    health = await _ok(dev, "system_health", {})
    check(health.startswith("warn: weak or no Wi-Fi") and "-91 dBm" in health, health)
    set_inputs(None)


async def test_reboot_needs_the_guard_word_and_waits_for_the_reply():
    dev = make()
    old = limits.REBOOT_DELAY_MS
    limits.REBOOT_DELAY_MS = 50
    try:
        await _refused(dev, "system_reboot", {"confirm": "yes"}, "confirm must be the word 'reboot'")
        await _refused(dev, "system_reboot", {}, "'confirm' required")

        dev.busy = True  # an ask is being answered
        check((await tools.run(dev, "system_reboot", {"confirm": "reboot"})).startswith("ok: rebooting"), "accepted")
        check(dev.board.resets == 0, "rebooted before the result could go out")
        await asyncio.sleep_ms(250)
        check(dev.board.resets == 0, "rebooted while the agent was still answering")
        dev.busy = False
        await asyncio.sleep_ms(200)
        check(dev.board.resets == 1, "did not reboot (resets=%d)" % dev.board.resets)
        check(json.loads(dev.link.sent[-1][1])["kind"] == "reboot", dev.link.sent[-1])
    finally:
        limits.REBOOT_DELAY_MS = old


def test_sim_reset_ends_the_process_unless_told_to_count():
    from wisp.hal.sim import Board
    board = Board()
    try:
        board.reset()
        raise Exception("sim reset did not exit")
    except SystemExit as e:
        check(e.args == (3,) and board.resets == 1, e.args)


async def test_publish_own_namespace_and_allowlist_only():
    dev = make()
    await _ok(dev, "publish", {"topic": "wisp/t1/notes", "payload": "hi"}, "ok: published 2 bytes to wisp/t1/notes")
    check(dev.link.sent[-1] == ("wisp/t1/notes", "hi", False, 1), dev.link.sent[-1])
    await _ok(dev, "publish", {"topic": "home/alerts/door", "payload": "open", "retain": True})
    check(dev.link.sent[-1] == ("home/alerts/door", "open", True, 1), dev.link.sent[-1])
    await _ok(dev, "publish", {"topic": "home/alerts", "payload": "x"})        # '#' includes the parent
    await _ok(dev, "publish", {"topic": "home/kitchen/temp", "payload": "21"})  # '+' is one level
    await _refused(dev, "publish", {"topic": "home/a/b/temp", "payload": "21"}, "publish_allow", "home/alerts/#")
    await _refused(dev, "publish", {"topic": "wisp/t2/notes", "payload": "x"}, "only under wisp/t1/")
    for own in ("wisp/t1/ask", "wisp/t1/llm/res", "wisp/t1/state/heater", "wisp/t1/status", "wisp/t1/"):
        await _refused(dev, "publish", {"topic": own, "payload": "x"}, "own protocol topic")
    await _refused(dev, "publish", {"topic": "home/alerts/#", "payload": "x"}, "no wildcards")
    await _refused(dev, "publish", {"topic": "$SYS/x", "payload": "x"}, "$")
    await _refused(dev, "publish", {"topic": "wisp/t1/notes", "payload": "x" * (limits.MAX_PUBLISH_PAYLOAD + 1)},
                   "payload longer than %d" % limits.MAX_PUBLISH_PAYLOAD)
    await _refused(dev, "publish", {"topic": "wisp/t1/notes", "payload": {"a": 1}}, "payload", "string")
    dev.link.up = False
    await _refused(dev, "publish", {"topic": "wisp/t1/notes", "payload": "x"}, "no broker connection")
    dev = make(extra={})
    await _refused(dev, "publish", {"topic": "home/alerts/door", "payload": "x"}, "(none)")


async def test_publish_refuses_a_topic_with_a_control_character_the_broker_would_drop_us_for():
    # MQTT forbids U+0000 in a topic; mosquitto also refuses U+0001-U+001F, by closing the
    # connection: the device went offline (its last will) and the tool said "no broker connection"
    # (measured with mosquitto 2.0), and so do DEL, the C1 controls U+0080-U+009F, surrogates
    # (json gives a lone one for "\ud800") and the non-characters U+FDD0-U+FDEF and U+xFFFE/F
    dev = make()
    for topic in ("wisp/t1/notes\x00", "wisp/t1/a\nb", "home/alerts/\tdoor", "wisp/t1/a\x7fb", "wisp/t1/a\x85b",
                  "wisp/t1/a\x9fb", json.loads('"wisp/t1/a\\ud800b"'), "wisp/t1/a\ufdd0b", "wisp/t1/a\ufffeb",
                  "wisp/t1/a\uffff", "wisp/t1/a\U0001ffffb"):
        await _refused(dev, "publish", {"topic": topic, "payload": "x"}, "printable characters")
    check(dev.link.sent == [], dev.link.sent)
    for topic in ("wisp/t1/caf\xe9", "wisp/t1/\xa0x", "wisp/t1/\ufdf0x", "wisp/t1/\U0001F600"):  # what mosquitto takes
        await _ok(dev, "publish", {"topic": topic, "payload": "x"})


def test_manifest_describes_every_hardware_tool_with_bounds():
    dev = make()
    m = manifest(dev)
    by_name = {t["name"]: t for t in m["tools"]}
    for name in ("gpio_toggle", "gpio_pulse", "pwm_set", "adc_read", "i2c_scan", "i2c_read", "i2c_write",
                 "i2c_write_read", "sensor_read", "system_info", "system_health", "system_reboot", "publish"):
        check(name in by_name and by_name[name]["desc"], name)
    props = by_name["pwm_set"]["params"]["properties"]
    check(props["pin"]["enum"] == ["dimmer"] and props["duty_percent"]["maximum"] == 100, props)
    check(by_name["adc_read"]["params"]["properties"]["pin"]["enum"] == ["soil"], "adc enum")
    check(by_name["sensor_read"]["params"]["properties"]["name"]["enum"] == ["attic", "room", "chip"], "sensor enum")
    check(by_name["gpio_pulse"]["params"]["properties"]["ms"]["maximum"] == limits.MAX_PULSE_MS, "pulse bound")
    check(m["pins"]["soil"] == {"mode": "adc"} and m["pins"]["dimmer"] == {"mode": "pwm"}, m["pins"])
