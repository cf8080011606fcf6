# GPIO facts of the classic ESP32 (WROOM/WROVER modules), shared by the real and simulated
# boards so a config behaves the same on both (wisp/pins.py turns them into refusals), and
# BoardBase: what both boards do the same way, written once.
import gc
import time

MAX_PIN = 39
FORBIDDEN = (6, 7, 8, 9, 10, 11)      # the SPI flash bus: touching them crashes the chip
MISSING = (20, 24, 28, 29, 30, 31)    # no such GPIO on a classic ESP32
INPUT_ONLY = (34, 35, 36, 37, 38, 39)  # no output driver and no internal pull resistors
ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)  # ADC2 pins read garbage while Wi-Fi is on
# Accepted with a warning that says why: boot strapping pins and UART0 (the REPL)
CAUTION = {
    0: "strapping: low at reset starts the bootloader",
    1: "UART0 TX (the REPL)",
    2: "strapping: must be low at reset to flash",
    3: "UART0 RX (the REPL)",
    5: "strapping: PWM during boot, a relay clicks",
    12: "strapping: high at reset = 1.8 V flash, no boot",
    15: "strapping: PWM during boot",
}
TRIGGERS = ("rising", "falling", "both")  # edges Board.irq() accepts


class BoardBase:
    max_pin = MAX_PIN
    forbidden_pins = FORBIDDEN
    missing_pins = MISSING
    input_only_pins = INPUT_ONLY
    adc_pins = ADC1
    caution_pins = CAUTION

    def _check_trigger(self, trigger):
        if trigger not in TRIGGERS:
            raise ValueError("trigger must be one of %s" % (TRIGGERS,))

    def free_heap(self):
        return gc.mem_free()

    def uptime_s(self):  # a board's __init__ sets _up_ms = 0 and _last = time.ticks_ms()
        # accumulated so the ticks_ms wrap (about 12 days) does not reset it
        now = time.ticks_ms()
        self._up_ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._up_ms // 1000
