# Simulated board for the MicroPython unix port: in-memory pins with the same interface as
# hal/esp32.py. Outputs are observable through the device's retained state/<pin> topics.
import os

NAME = "sim"
FORBIDDEN_PINS = (6, 7, 8, 9, 10, 11)  # mirror the classic ESP32 so configs behave the same
MAX_PIN = 39


class SimPin:
    def __init__(self, board, num, mode, pull=None, value=0):
        self.board, self.num, self.mode = board, num, mode
        if mode == "out" or num not in board.levels:
            board.levels[num] = value if mode == "out" else (1 if pull == "up" else 0)

    def value(self, v=None):
        if v is None:
            return self.board.levels[self.num]
        if self.mode == "out":
            self.board.levels[self.num] = 1 if v else 0


class Board:
    name = NAME
    forbidden_pins = FORBIDDEN_PINS
    max_pin = MAX_PIN

    def __init__(self):
        self.levels = {}  # pin number -> 0/1

    def pin(self, num, mode, pull=None, value=0):
        return SimPin(self, num, mode, pull, value)

    async def connect_network(self, config, log):
        return True  # the host's network is already up

    def unique_id(self):
        return "sim%04x" % (os.getpid() & 0xFFFF) if hasattr(os, "getpid") else "sim0"

    def reset(self):
        raise SystemExit(3)  # the unix port cannot reboot; the launcher may restart us
