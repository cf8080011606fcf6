# The hardware abstraction: the only package that imports machine, network, esp32, ntptime, dht.
# Picks the real ESP32 board when its modules exist, else the simulated board of the unix port.
try:
    import esp32  # noqa: F401, I001  (present only on ESP32 firmware)
    from wisp.hal.esp32 import Board
except ImportError:
    from wisp.hal.sim import Board  # noqa: F401  (wisp.hal.Board is what the rest imports)
