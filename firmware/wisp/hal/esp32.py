# The real ESP32 board: machine (Pin, PWM, ADC, I2C, WDT, RTC), network.WLAN (hal/wifi.py), the
# clock by SNTP (hal/sntp.py) and dht behind the same interface as hal/sim.py. Only hal/ imports
# these modules.
import asyncio
import time

import machine
import network
import ubinascii

from wisp.hal import pinmap

NAME = "esp32"
WIFI_TIMEOUT_MS = 20000
EPOCH_2000 = 946684800  # unix time of 2000-01-01


class ADC:
    """12-bit reads (0-4095) at 11 dB attenuation: about 0.15-3.1 V full scale."""

    def __init__(self, num):
        self.adc = machine.ADC(machine.Pin(num), atten=machine.ADC.ATTN_11DB)

    def read(self):
        return self.adc.read_u16() >> 4

    def volts(self):
        return self.adc.read_uv() / 1000000  # uses the chip's factory calibration


class Board(pinmap.BoardBase):
    name = NAME

    def __init__(self):
        self._wdt = None
        self._hold = None  # the timer feeding the watchdog at the REPL
        self._wifi = {}  # hal/wifi.py's memory across attempts
        self._up_ms, self._last = 0, time.ticks_ms()

    def pin(self, num, mode, pull=None, value=0):
        if mode == "out":
            return machine.Pin(num, machine.Pin.OUT, value=value)
        pulls = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}
        return machine.Pin(num, machine.Pin.IN, pulls.get(pull))

    def pwm(self, num, freq, duty_u16):
        return machine.PWM(machine.Pin(num), freq=freq, duty_u16=duty_u16)

    def adc(self, num):
        return ADC(num)

    def i2c(self, scl, sda, freq):
        return machine.I2C(0, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq)

    def dht(self, num, kind):
        import dht  # only boards with a DHT sensor configured pay for the driver
        sensor = (dht.DHT11 if kind == "dht11" else dht.DHT22)(machine.Pin(num))
        sensor.measure()  # blocks ~270 ms (250 + 18 ms start signal, ~5 ms read); OSError if none answers
        return sensor.temperature(), sensor.humidity()

    def free_heap(self):
        """Free bytes of the Python heap as taken so far. gc.mem_free() here also counts the largest
        free ESP-IDF block, which the heap would take to grow and which Wi-Fi and mbedTLS need."""
        import gc

        import esp32
        largest = 0
        for region in esp32.idf_heap_info(esp32.HEAP_DATA):  # (total, free, largest free, min free)
            largest = max(largest, region[2])
        return max(0, gc.mem_free() - largest)

    def chip_temp(self):
        import esp32
        if hasattr(esp32, "mcu_temperature"):  # S2, S3, C3...
            return esp32.mcu_temperature()
        return (esp32.raw_temperature() - 32) / 1.8  # classic ESP32: Fahrenheit, rough

    def irq(self, pin, handler, trigger="both"):
        """handler(level) runs as a soft IRQ (MicroPython's scheduler), never mid-bytecode."""
        self._check_trigger(trigger)
        bits = {"rising": machine.Pin.IRQ_RISING, "falling": machine.Pin.IRQ_FALLING}
        mask = bits.get(trigger, machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING)
        pin.irq(handler=lambda p: handler(p.value()), trigger=mask)

    def irq_flag(self):
        """The one asyncio object an IRQ handler may set; wait() clears it."""
        return asyncio.ThreadSafeFlag()

    def close(self):
        pass  # real IRQs need no poller; kept for the same interface as the sim

    def wdt_start(self, timeout_ms):
        # cannot be stopped once started: from now on wdt_feed() must run within timeout_ms
        if self._hold:
            self._hold.deinit()
            self._hold = None
        self._wdt = machine.WDT(timeout=timeout_ms)

    def wdt_hold(self):
        """At the REPL after Ctrl-C: a timer feeds the running watchdog (it cannot be stopped),
        so the board does not reset under the user. True if a watchdog runs."""
        if not self._wdt:
            return False
        self._hold = machine.Timer(0)
        self._hold.init(period=1000, callback=lambda t: self._wdt.feed())
        return True

    def wdt_feed(self):
        if self._wdt:
            self._wdt.feed()
        self.uptime_s()

    def rssi(self):
        wlan = network.WLAN(network.STA_IF)
        return wlan.status("rssi") if wlan.isconnected() else None

    async def sync_time(self, config, log):
        """Set the RTC to UTC by SNTP (hal/sntp.py); the server used, or None."""
        from wisp.hal import sntp
        return await sntp.sync(config, self._set_rtc, log)

    def _set_rtc(self, unix):
        tm = time.gmtime(unix - EPOCH_2000)  # the ESP32 counts time.time() from 2000
        machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))

    async def connect_network(self, config, log):
        from wisp.hal import wifi
        return await wifi.join(network.WLAN(network.STA_IF), config, log, self._wifi, WIFI_TIMEOUT_MS)

    def unique_id(self):
        return ubinascii.hexlify(machine.unique_id()).decode()

    def hw_info(self):
        """(model, chip, Wi-Fi MAC) for Home Assistant's device page."""
        import os
        model = os.uname().machine  # "Generic ESP32 module with ESP32"
        mac = ubinascii.hexlify(network.WLAN(network.STA_IF).config("mac"), ":").decode()
        return model, model.split(" with ")[-1], mac

    def reset(self):
        machine.reset()
