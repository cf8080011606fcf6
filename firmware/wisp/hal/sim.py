# Simulated board for the MicroPython unix port: the same interface as hal/esp32.py, with
# outputs kept in memory and inputs (pin levels, ADC, DHT, I2C devices) read from
# sim_inputs.json in the flash root, so tests and the e2e stack can drive them with no network.
# PWM, ADC and I2C live in hal/sim_bus.py, imported on first use.
import asyncio
import json
import os
import time

import micropython

from wisp.hal import pinmap

NAME = "sim"
INPUTS_FILE = "sim_inputs.json"
POLL_MS = 100          # how often watched input pins are compared for irq edges
CHIP_TEMP_C = 41.5     # what the chip sensor says unless sim_inputs.json sets "chip_temp"
RSSI_DBM = -50
WIFI_TIMEOUT_MS = 20000
ETIMEDOUT = 110        # errno the dht driver raises when no sensor answers


class SimPin:
    def __init__(self, board, num, mode, pull=None, value=0):
        self.board, self.num, self.mode = board, num, mode
        if mode == "out" or num not in board.levels:
            board.levels[num] = value if mode == "out" else (1 if pull == "up" else 0)

    def value(self, v=None):
        if v is None:
            return self.level(self.board.inputs()) if self.mode != "out" else self.board.levels[self.num]
        if self.mode == "out":
            self.board.levels[self.num] = 1 if v else 0

    def level(self, inputs):
        """This input's level given a parse of sim_inputs.json (its pull level if not listed)."""
        given = inputs.get("pins", {}).get(str(self.num))
        if given is not None:
            return 1 if given else 0
        return self.board.levels[self.num]


class SimWLAN:
    """The ESP32 Wi-Fi driver as it behaves (MicroPython v1.26.1, ports/esp32/network_wlan.c):
    after connect() it keeps trying by itself until disconnect(), and connect() while it does
    raises OSError("Wifi Internal Error"); status() names the ESP-IDF reason the last try failed
    for only when it is one of a few (status() below). sim_inputs.json "wifi": absent or true,
    the access point lets it in; false, no access point in range (reason 201); an ESP-IDF reason
    code, or a list of them taken in turn, each try failing for it: 202 or 205 a refused password,
    15 a wrong WPA2 password on ESP-IDF 5, 210 a security mismatch. Each status() call while
    trying sees one more failed try."""

    def __init__(self, board):
        self.board, self.trying, self.connects = board, False, 0
        self.reason, self.tries = 0, 0  # the last try's disconnect reason (0: none yet)

    def active(self, on=None):
        return True

    def connect(self, ssid, password=""):
        if self.trying:
            raise OSError("Wifi Internal Error")
        self.trying = True
        self.connects += 1

    def disconnect(self):
        if self.isconnected():
            self.reason = 8  # WIFI_REASON_ASSOC_LEAVE: the driver's event for leaving
        self.trying = False

    def _fails(self):
        """The reason(s) each try fails for; None: it joins."""
        given = self.board.inputs().get("wifi", True)
        return None if given is True else 201 if given is False else given

    def isconnected(self):
        if self.trying and self._fails() is None:
            self.reason = 0  # IP_EVENT_STA_GOT_IP clears it
            return True
        return False

    def status(self):
        if self.isconnected():
            return 1010  # STAT_GOT_IP
        fails = self._fails()
        if self.trying:
            fails = fails if isinstance(fails, list) else [fails]
            self.reason = fails[self.tries % len(fails)]
            self.tries += 1
        r = self.reason
        # network_wlan_status(), in its order: these reasons are named...
        if r == 201 or 210 <= r <= 212:  # STAT_NO_AP_FOUND(_W_COMPATIBLE_SECURITY, _IN_..._THRESHOLD)
            return r
        if r in (202, 205):  # AUTH_FAIL, CONNECTION_FAIL: STAT_WRONG_PASSWORD
            return 202
        if r == 8:
            return 1000  # STAT_IDLE after disconnect()
        if self.trying:  # ...any other (15, 200, 203, 204) reads as STAT_CONNECTING, the driver
            return 1001  # retrying forever (config reconnects=0)
        return 1000 if r == 0 else r

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")


class SimFlag(asyncio.Event):
    """ThreadSafeFlag's behaviour (wait() clears it) on an Event: on the unix port a waiting
    ThreadSafeFlag makes the event loop poll every millisecond instead of sleeping."""

    async def wait(self):
        await super().wait()
        self.clear()


def _soft_irq(arg):
    w, level = arg
    try:
        w[1](level)
    except Exception as e:  # a bad handler must not stop the other pins
        print("wisp: error: irq handler of GPIO%d: %r" % (w[0].num, e))


class Board(pinmap.BoardBase):
    name = NAME

    def __init__(self):
        self.levels = {}          # pin number -> 0/1 of outputs (and input defaults from pulls)
        self.pwms = {}            # pin number -> SimPWM, for tests to look at
        self.resets = 0           # reset() calls; set exit_on_reset False to only count them
        self.exit_on_reset = True
        self.wdt_timeout_ms = None
        self.wdt_feeds = 0
        self.wdt_held = False     # wdt_hold(): fed by a timer while at the REPL
        self._inputs = {}         # last good parse of INPUTS_FILE
        self._watch = []          # [pin, handler, trigger, last level]
        self._poller = None
        self._up_ms, self._last = 0, time.ticks_ms()
        self.wlan = SimWLAN(self)
        self.wifi_timeout_ms = WIFI_TIMEOUT_MS
        self._wifi = {}
        self.synced_time = None   # what the last sync_time() got from a server
        self.dht_reads = 0

    # ---- simulated inputs ------------------------------------------------------------------
    def inputs(self):
        """sim_inputs.json as a dict; a half-written file keeps the last good copy."""
        try:
            with open(INPUTS_FILE) as f:
                data = json.load(f)
            if isinstance(data, dict):
                self._inputs = data
        except OSError:
            self._inputs = {}  # no file: every input at its default
        except ValueError:
            pass
        return self._inputs

    # ---- the HAL interface (same as hal/esp32.py) ------------------------------------------
    def pin(self, num, mode, pull=None, value=0):
        return SimPin(self, num, mode, pull, value)

    def pwm(self, num, freq, duty_u16):
        from wisp.hal.sim_bus import SimPWM
        p = self.pwms[num] = SimPWM(freq, duty_u16)
        return p

    def adc(self, num):
        from wisp.hal.sim_bus import SimADC
        return SimADC(self, num)

    def i2c(self, scl, sda, freq):
        from wisp.hal.sim_bus import SimI2C
        return SimI2C(self)

    def dht(self, num, kind):
        self.dht_reads += 1  # each one would block a real board ~270 ms
        reading = self.inputs().get("dht", {}).get(str(num))
        if not isinstance(reading, list) or len(reading) != 2:
            raise OSError(ETIMEDOUT)  # what the dht driver raises when no sensor answers
        if kind == "dht11":  # whole degrees and %RH, as ints: what MicroPython's dht driver returns
            return int(reading[0]), int(reading[1])
        # tenths, which the driver multiplies by 0.1: 22.7 comes out as 22.700000000000003 (and as
        # 22.699999 with an ESP32's single-precision floats)
        return round(reading[0] * 10) * 0.1, round(reading[1] * 10) * 0.1

    def chip_temp(self):
        return float(self.inputs().get("chip_temp", CHIP_TEMP_C))

    def irq(self, pin, handler, trigger="both"):
        """Call handler(level) on edges of an input pin, as a soft IRQ (micropython.schedule) as on
        the ESP32; edges are found by a task that polls the inputs file every POLL_MS, started by
        the first irq() call (close() stops it)."""
        self._check_trigger(trigger)
        self._watch.append([pin, handler, trigger, pin.value()])
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())

    async def _poll(self):
        while self._watch:
            await asyncio.sleep_ms(POLL_MS)
            inputs = self.inputs()  # one read of the file per tick, however many pins are watched
            for w in self._watch:
                level = w[0].level(inputs)
                if level == w[3]:
                    continue
                w[3] = level
                if w[2] == "both" or (w[2] == "rising") == (level == 1):
                    # as the ESP32 runs a pin's handler: a soft IRQ from MicroPython's scheduler,
                    # between two bytecodes of whatever runs, not from a task of the loop
                    try:
                        micropython.schedule(_soft_irq, (w, level))
                    except RuntimeError:  # the scheduler's queue is full: call it from here
                        _soft_irq((w, level))
        self._poller = None

    def irq_flag(self):
        return SimFlag()

    def close(self):
        self._watch = []
        if self._poller:
            self._poller.cancel()
            self._poller = None

    def wdt_start(self, timeout_ms):
        self.wdt_timeout_ms = timeout_ms
        self.wdt_held = False

    def wdt_hold(self):
        self.wdt_held = self.wdt_timeout_ms is not None  # what a timer would feed on the ESP32
        return self.wdt_held

    def wdt_feed(self):
        self.wdt_feeds += 1
        self.uptime_s()

    def rssi(self):
        return self.inputs().get("rssi", RSSI_DBM)

    async def sync_time(self, config, log):
        """The unix port runs on the host clock: with no "ntp" in config there is nothing to do;
        with it, the servers are asked as on the ESP32 and the answer kept in synced_time."""
        if "ntp" not in config:
            return "host"
        from wisp.hal import sntp
        return await sntp.sync(config, self._set_clock, log)

    def _set_clock(self, unix):
        self.synced_time = unix

    async def connect_network(self, config, log):
        if not config.get("wifi"):
            return True  # the host's network is already up
        from wisp.hal import wifi
        return await wifi.join(self.wlan, config, log, self._wifi, self.wifi_timeout_ms)

    def unique_id(self):
        # one per flash folder, as a board's comes from its chip: the unix port has no getpid, and one
        # id for every device without a configured id made them take each other's place on the broker
        return "sim%06x" % (hash(os.getcwd()) & 0xFFFFFF)

    def hw_info(self):
        """(model, chip, MAC): a locally administered MAC made from the unique id."""
        n = hash(self.unique_id()) & 0xFFFF
        return "MicroPython unix port (simulated board)", "sim", "02:00:00:00:%02x:%02x" % (n >> 8, n & 0xFF)

    def reset(self):
        self.resets += 1
        if self.exit_on_reset:
            raise SystemExit(3)  # the unix port cannot reboot; the launcher may restart us
