# MicroPython manifest that freezes the wisp package into a custom firmware build, so its bytecode
# and names run from flash. An option: stock firmware with plain .mpy files is the default path
# (docs/tools.md, "Firmware builds"). Not Python to run: MicroPython's build reads it.
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/wisp/tools/frozen_manifest.py
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821  (the port's own: asyncio, ntptime, dht...)
include("frozen_wisp.py")  # noqa: F821  (what wisp adds: also frozen into the heap bench's builds)
