# The real ESP32 board: machine.Pin and network.WLAN behind the same interface as hal/sim.py.
import asyncio

import machine
import network
import ubinascii

NAME = "esp32"
# GPIO6-11 drive the SPI flash on a classic ESP32: touching them crashes the chip.
FORBIDDEN_PINS = (6, 7, 8, 9, 10, 11)
MAX_PIN = 39
WIFI_TIMEOUT_MS = 20000


class Board:
    name = NAME
    forbidden_pins = FORBIDDEN_PINS
    max_pin = MAX_PIN

    def pin(self, num, mode, pull=None, value=0):
        if mode == "out":
            return machine.Pin(num, machine.Pin.OUT, value=value)
        pulls = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}
        return machine.Pin(num, machine.Pin.IN, pulls.get(pull))

    async def connect_network(self, config, log):
        wifi = config.get("wifi") or {}
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if wlan.isconnected():
            return True
        if not wifi.get("ssid"):
            log("error: no wifi.ssid in config.json")
            return False
        wlan.connect(wifi["ssid"], wifi.get("password", ""))
        waited = 0
        while not wlan.isconnected() and waited < WIFI_TIMEOUT_MS:
            await asyncio.sleep_ms(200)
            waited += 200
        if not wlan.isconnected():
            log("error: wifi '%s' did not connect within %d s" % (wifi["ssid"], WIFI_TIMEOUT_MS // 1000))
            return False
        log("wifi: connected, ip %s" % wlan.ifconfig()[0])
        return True

    def unique_id(self):
        return ubinascii.hexlify(machine.unique_id()).decode()

    def reset(self):
        machine.reset()
