# Simulator only (MicroPython): mount the ROMFS image the launcher mapped, as an ESP32 with a
# ROMFS partition does at /rom, then run the given main.py from the flash root.
import os
import sys

import uctypes
import vfs

addr, size = [int(x) for x in os.getenv("WISP_ROMFS").split(":")]
vfs.mount(vfs.VfsRom(uctypes.bytearray_at(addr, size)), "/rom")
sys.path.insert(0, "/rom")
exec(open(os.getenv("WISP_MAIN")).read(), {"__name__": "__main__"})
