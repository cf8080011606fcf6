# Device entry point: the ESP32 runs it after boot.py; `wisp sim` runs it on the unix port.
import wisp.app

wisp.app.start()
