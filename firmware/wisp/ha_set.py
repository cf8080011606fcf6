# `set/<name>` from Home Assistant: ON/OFF/TOGGLE for outputs, a duty (or ON/OFF) for PWM pins,
# and the restart button (set/_restart). Loaded by wisp/ha.py while a command runs.
import time

from wisp import limits, tools
from wisp.ha import PRESS, RESTART
from wisp.log import log

ON_WORDS = ("ON", "TRUE", "1")  # a PWM pin takes the words only ([:2]): 1 and 0 are duties there
OFF_WORDS = ("OFF", "FALSE", "0")


async def on_set(dev, name, payload):
    """`set/<name>` from Home Assistant: ON/OFF/TOGGLE for outputs; 0-100, ON or OFF for PWM."""
    if name == RESTART:
        return await _restart(dev, payload)
    pin = dev.pins.get(name)
    try:
        text = payload.decode().strip().upper() if payload else ""
    except UnicodeError:  # not UTF-8: refused below like any other unknown word
        text = "?"
    if pin is None:
        result = "Error: no pin '%s'" % name
    elif pin.mode == "pwm":
        result = await _set_pwm(dev, pin, text)
    elif text in ON_WORDS or text in OFF_WORDS:
        result = await tools.run(dev, "gpio_write", {"pin": name, "value": 1 if text in ON_WORDS else 0})
    elif text == "TOGGLE":
        result = await tools.run(dev, "gpio_toggle", {"pin": name})
    else:
        result = "Error: set/%s wants ON, OFF or TOGGLE, got %r" % (name, text[:20])
    if result.startswith("Error"):
        log("set/%s refused: %s" % (name, result))
        await dev.event("error", result)
        if pin is not None:
            await dev.pin_changed(name)  # re-assert the real state, so Home Assistant's switch flips back


async def _set_pwm(dev, pin, text):
    llm = 0
    if text in ON_WORDS[:2]:  # a light turned on with no brightness: back to where it was, a duty
        # that stays the LLM's when it chose it (a routine reading it acts for the LLM)
        duty, llm = (pin.duty, pin.by_llm) if pin.duty else (pin.bright, pin.bright_llm)
    elif text in OFF_WORDS[:2]:  # TRUE/FALSE: a boolean from Node-RED, as on an output
        duty = 0
    else:
        try:
            duty = float(text)
        except ValueError:  # words
            duty = -1
        if not 0 <= duty <= 100:  # nan, inf, out of range: checked before rounding (-0.9 is no 0)
            return "Error: set/%s wants a number 0-100, ON or OFF, got %r" % (pin.name, text[:20])
        duty = int(duty + 0.5)
    return await tools.run(dev, "pwm_set", {"pin": pin.name, "duty_percent": duty}, 2 if llm else 0)


async def _restart(dev, payload):
    if not payload:
        return  # the clearing below, coming back to us
    if payload != PRESS.encode():
        await dev.event("error", "restart wants the payload '%s'" % PRESS)
        return
    # A retained press would reboot at every boot. The router refuses one the broker marks
    # retained (wisp/app.py); this window is for a broker that does not mark it (MQTT-3.3.1-8).
    since = time.ticks_diff(time.ticks_ms(), dev.connected_ms)
    if dev.connected_n != dev.link.connects or since < limits.RESTART_GUARD_MS:
        log("restart refused: it came %d ms after connecting (a retained message?)" % since)
        await dev.event("error", "restart refused: pressed within %d ms of connecting" % limits.RESTART_GUARD_MS)
        await dev.link.publish(dev.topic("set/" + RESTART), b"", True, 1, 0)
        return
    result = await tools.run(dev, "system_reboot", {"confirm": PRESS})
    log("restart button: " + result)
