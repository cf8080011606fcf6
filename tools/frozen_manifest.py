# MicroPython manifest that freezes the wisp package into a custom firmware build, so its bytecode
# and strings run from flash. An option: stock firmware with plain .mpy files is the default path
# (docs/tools.md, "Firmware builds"). Not Python to run: MicroPython's build reads it.
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/wisp/tools/frozen_manifest.py
# boot.py and main.py stay on the board's filesystem: MicroPython runs only those two names.
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821  (the port's own: asyncio, ntptime, dht...)
package("wisp", base_path="../firmware", opt=1)  # noqa: F821  (paths are relative to this file)
