# Device entry point: the ESP32 runs it after boot.py; `wisp sim` runs it on the unix port.
# wispboot picks the firmware slot (over-the-air updates, docs/ota.md), then starts wisp.app.
import wispboot

wispboot.start()
