# Bench only, run by the 32-bit MicroPython build: mount a ROMFS image at /rom as an ESP32 with a
# romfs partition does, then run main.py. The unix build cannot map a file outside its heap, so
# the image is read into one block allocated first, and bench/esp32_heap.py gives it that much
# more heap: what is left for the firmware is the heap asked for.
import os
import sys

import vfs

f = open(os.getenv("WISP_ROMFS_FILE"), "rb")
image = bytearray(f.seek(0, 2))
f.seek(0)
f.readinto(image)
f.close()
vfs.mount(vfs.VfsRom(image), "/rom")
sys.path.insert(0, "/rom")
exec(open(os.getenv("WISP_MAIN")).read(), {"__name__": "__main__"})
