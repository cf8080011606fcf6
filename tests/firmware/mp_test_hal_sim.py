# The simulated board: sim_inputs.json drives input pins, ADC, DHT and I2C devices; level
# changes reach irq handlers; the real ESP32 board offers the same interface.
import asyncio
import os
import sys

from hwdevice import make, set_inputs
from mpcheck import check

from wisp import tools
from wisp.hal import sim


def test_inputs_file_drives_pins_adc_dht_and_i2c():
    set_inputs(None)
    board = sim.Board()
    door = board.pin(4, "in", "up")
    check(door.value() == 1, "pull-up default")
    check(board.adc(34).read() == 0, "adc default")
    set_inputs({"pins": {"4": 0}, "adc": {"34": 5000}, "dht": {"15": [21.5, 40]},
                "i2c": {"0x76": {"0xD0": [0x60, 7]}}})
    check(door.value() == 0, "file did not pull the door low")
    check(board.adc(34).read() == 4095, "adc not clamped to 12 bits")
    check(board.dht(15, "dht22") == (21.5, 40.0), "dht reading")
    bus = board.i2c(22, 21, 100000)
    check(bus.scan() == [0x76] and bus.readfrom_mem(0x76, 0xD0, 3) == b"\x60\x07\x00", "i2c regs")
    bus.writeto_mem(0x76, 0xD1, b"\x09")
    check(bus.readfrom_mem(0x76, 0xD0, 2) == b"\x60\x09", "a written register is not read back")
    for call in (lambda: bus.readfrom(0x50, 1), lambda: board.dht(16, "dht11")):
        try:
            call()
            raise Exception("a missing device answered")
        except OSError:
            pass
    set_inputs(None)
    check(door.value() == 1, "removing the file restores defaults")


def test_a_half_written_inputs_file_keeps_the_last_good_values():
    board = sim.Board()
    set_inputs({"adc": {"34": 1234}})
    check(board.adc(34).read() == 1234, "first read")
    with open(sim.INPUTS_FILE, "w") as f:
        f.write('{"adc": {"34": 99')
    check(board.adc(34).read() == 1234, "a torn file changed the reading")
    set_inputs(None)


def test_inputs_file_drives_the_tools():
    dev = make()
    set_inputs({"pins": {"4": 0}})
    check(asyncio.run(tools.run(dev, "gpio_read", {"pin": "door"})) == "door=0", "gpio_read ignores the file")
    set_inputs(None)
    check(asyncio.run(tools.run(dev, "gpio_read", {"pin": "door"})) == "door=1", "file removed: back to the pull-up")


async def test_level_changes_call_irq_handlers_from_the_loop():
    set_inputs(None)
    dev = make()
    falls, both = [], []
    dev.pins["door"].watch(falls.append, "falling", dev.board)
    dev.board.irq(dev.board.pin(13, "in", "down"), both.append, "both")
    await asyncio.sleep_ms(150)
    check(falls == [] and both == [], "edges with no change")
    set_inputs({"pins": {"4": 0, "13": 1}})
    await asyncio.sleep_ms(250)
    check(falls == [0] and both == [1], (falls, both))
    set_inputs({"pins": {"4": 1, "13": 0}})
    await asyncio.sleep_ms(250)
    check(falls == [0] and both == [1, 0], "rising edge reached a falling-only handler: %r" % falls)
    dev.board.close()
    set_inputs({"pins": {"4": 0}})
    await asyncio.sleep_ms(250)
    check(falls == [0], "handler called after close()")
    set_inputs(None)
    try:
        dev.board.irq(dev.board.pin(13, "in"), both.append, "sideways")
        raise Exception("bad trigger accepted")
    except ValueError:
        pass


def test_watchdog_uptime_and_board_facts():
    board = sim.Board()
    check(board.wdt_timeout_ms is None, "wdt running before start")
    board.wdt_start(8000)
    board.wdt_feed()
    board.wdt_feed()
    check(board.wdt_timeout_ms == 8000 and board.wdt_feeds == 2, "wdt not recorded")
    check(board.uptime_s() == 0 and board.free_heap() > 0 and board.rssi() == -50, "health figures")
    check(asyncio.run(board.sync_time({}, print)) == "host" and 30 < board.chip_temp() < 60, "clock / chip temp")


def test_devices_in_two_flash_folders_get_two_ids():
    # a device without a configured id is named from this; two of them must not share a broker id
    here, ids = os.getcwd(), []
    for folder in ("kitchen_dev", "garage_dev"):
        try:
            os.mkdir(folder)
        except OSError:
            pass
        os.chdir(folder)
        ids.append(sim.Board().unique_id())
        os.chdir(here)
    check(ids[0] != ids[1], "two folders, one id: %r" % ids)
    check(sim.Board().unique_id() == sim.Board().unique_id(), "the id changes between boots")


class _Stub:
    """Stands in for machine, network and friends, so hal/esp32.py can be imported here."""

    def __init__(self, **attrs):
        for k, v in attrs.items():
            setattr(self, k, v)

    def __call__(self, *args, **kw):
        return _Stub(args=args, kw=kw)

    def __getattr__(self, name):
        return _Stub()


def test_esp32_board_offers_the_same_interface_as_the_sim():
    saved = {m: sys.modules.get(m) for m in ("machine", "network")}
    sys.modules["machine"] = _Stub()
    sys.modules["network"] = _Stub()
    try:
        from wisp.hal import esp32
    finally:
        for m, mod in saved.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
    real = [n for n in dir(esp32.Board) if not n.startswith("_")]
    simulated = [n for n in dir(sim.Board) if not n.startswith("_")]
    sim_only = ("inputs",)  # the sim's own test hooks
    check(sorted(real) == sorted(n for n in simulated if n not in sim_only),
          "interfaces differ: %r vs %r" % (sorted(real), sorted(simulated)))
    for facts in ("forbidden_pins", "input_only_pins", "adc_pins", "missing_pins", "caution_pins", "max_pin"):
        check(getattr(esp32.Board, facts) == getattr(sim.Board, facts), facts)
