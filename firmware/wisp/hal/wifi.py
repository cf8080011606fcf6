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
    waited = why = 0
    while not wlan.isconnected() and waited < timeout_ms:
        await asyncio.sleep_ms(STEP_MS)
        waited += STEP_MS
        s = wlan.status()
        if s < 1000:  # not STAT_IDLE/CONNECTING: the reason the driver's last try failed
            why = s
    if not wlan.isconnected():
        # While the driver retries, status() names only a few ESP-IDF reasons (MicroPython 1.22+,
        # ports/esp32/network_wlan.c; 1.21 none): 202 STAT_WRONG_PASSWORD (also for 205), 210 no
        # network of that name with that security (a password missing or not wanted), 201 none of
        # that name (211, 212: none within a threshold). A wrong WPA2 password often fails as a
        # handshake timeout (15 or 204), read as STAT_CONNECTING like any other: so no reason
        # means every check.
        log("error: wifi '%s' did not connect within %d s: %s" % (
            wifi["ssid"], timeout_ms // 1000,
            "wrong password? check wifi.password in config.json" if why == 202 or why == 210 else
            "not found: check wifi.ssid; an ESP32 sees 2.4 GHz only" if why else
            "check wifi.password, wifi.ssid; an ESP32 sees 2.4 GHz only"))
        return False
    log("wifi: connected, ip %s" % wlan.ifconfig()[0])
    return True
