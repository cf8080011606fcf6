# Runs first on every ESP32 boot. Kept minimal so a broken main.py still leaves a usable REPL.
import sys

# A firmware built with ROMFS (docs/tools.md) mounts its romfs partition at /rom: the wisp
# package there, run in place from flash, comes before any .mpy files left on the filesystem.
# Stock firmware has no ROMFS: nothing happens and the filesystem's .mpy files are the firmware.
try:
    import os

    import vfs
    try:
        os.stat("/rom")
    except OSError:
        if vfs.rom_ioctl(1) > 0:  # builds that do not mount it themselves
            vfs.mount(vfs.VfsRom(vfs.rom_ioctl(2, 0)), "/rom")
    os.stat("/rom/wisp")
    if "/rom" in sys.path:
        sys.path.remove("/rom")
    sys.path.insert(0, "/rom")
except (ImportError, AttributeError, OSError):
    pass
# Outputs go to their safe level before anything else loads: relays must not float meanwhile.
try:
    from wisp.hal import Board, early
    early.drive(Board())
    del Board, early
except Exception as e:
    print("wisp: boot: outputs not set early:", repr(e))
import gc

gc.collect()
