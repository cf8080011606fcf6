# Device entry point: the ESP32 runs it after boot.py; `wisp sim` runs it on the unix port.
# wispboot picks the firmware slot (over-the-air updates, docs/ota.md), then starts wisp.app.
# Whatever stops the firmware (even a MemoryError while importing it) resets the board after a
# pause: a board left at the REPL would stay offline until someone power-cycles it.
import sys

if sys.implementation.version < (1, 23):  # asyncio streams with TLS, TCP_NODELAY under lwIP
    print("wisp: needs MicroPython 1.23 or later, this is %d.%d.%d: flash a newer firmware"
          % sys.implementation.version[:3])
else:
    try:
        import wispboot
        app = wispboot.start()
        del wispboot
        sys.modules.pop("wispboot", None)  # a normal boot needs it no more: its heap goes to the agent
        if app is not None:
            app.start()
    except Exception as e:
        import time
        sys.print_exception(e)
        time.sleep(10)
        from wisp.hal import Board
        Board().reset()
