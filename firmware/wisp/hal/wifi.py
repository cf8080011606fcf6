# Joining Wi-Fi, for the real board (network.WLAN) and the simulated one (sim.SimWLAN) alike.
# After the first connect() the ESP32 driver keeps reconnecting by itself, and a second
# connect() while it does raises OSError "Wifi Internal Error": so a retry disconnects first,
# and anything the driver raises is logged, never let out (it would stop the board at the REPL).
import asyncio

STEP_MS = 200


async def join(wlan, config, log, state, timeout_ms):
    """True once connected. state: a dict the board keeps across calls ("asked": connect() was
    called before)."""
    wifi = config.get("wifi") or {}
    try:
        wlan.active(True)
        if wlan.isconnected():
            return True
        if not wifi.get("ssid"):
            log("error: no wifi.ssid in config.json")
            return False
        if state.get("asked"):
            wlan.disconnect()  # stop the driver's own retries before asking again
        state["asked"] = True
        wlan.connect(wifi["ssid"], wifi.get("password", ""))
    except OSError as e:
        log("wifi: driver error %r; retrying" % (e,))
        return False
    waited = 0
    while not wlan.isconnected() and waited < timeout_ms:
        await asyncio.sleep_ms(STEP_MS)
        waited += STEP_MS
    if not wlan.isconnected():
        log("error: wifi '%s' did not connect within %d s" % (wifi["ssid"], timeout_ms // 1000))
        return False
    log("wifi: connected, ip %s" % wlan.ifconfig()[0])
    return True
