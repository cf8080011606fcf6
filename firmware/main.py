# Device entry point: the ESP32 runs it after boot.py; `wisp sim` runs it on the unix port.
# Whatever stops the firmware (even a MemoryError while importing it) resets the board after a
# pause: a board left at the REPL would stay offline until someone power-cycles it.
try:
    import wisp.app
except Exception as e:
    import sys
    import time
    sys.print_exception(e)
    time.sleep(10)
    from wisp.hal import Board
    Board().reset()
wisp.app.start()
