# Per-pin confirmation: a pin marked "confirm": true in config.json is never switched on by the
# LLM alone. The LLM's call is held, the user is asked, and only a following ask of "yes"
# (words from the user, which the LLM cannot send) carries it out. Switching off, direct
# commands, Home Assistant, schedules and the fast path are the user's or the owner's own
# actions and need no confirmation. An LLM-defined routine may not switch such a pin at all.
import time

from wisp import limits

WORDS = ("yes", "y", "confirm", "confirmed", "ok", "okay", "do it", "yes please")
_SWITCHES = ("gpio_write", "gpio_toggle", "gpio_pulse", "pwm_set")


def _needs(dev, tool, args):
    """The pin name if this LLM call would switch a confirm pin on, else None."""
    if tool not in _SWITCHES or not isinstance(args, dict):
        return None
    name = args.get("pin")
    pin = dev.pins.get(name) if isinstance(name, str) else None
    if pin is None or not pin.confirm:
        return None
    if tool == "gpio_toggle":
        on = not pin.read()
    else:
        on = bool(args.get("value", args.get("duty_percent", 1)))
    return name if on else None


def _mentions_confirm_pin(dev, steps):
    for step in steps if isinstance(steps, list) else ():
        if isinstance(step, dict) and _needs(dev, step.get("tool"), step.get("args")):
            return step["args"]["pin"]
    return None


def hold(dev, tool, args):
    """Called for every tool call the LLM makes: an error text when it must wait, else None."""
    if tool == "routine_define" and isinstance(args, dict):
        name = _mentions_confirm_pin(dev, args.get("steps"))
        if name:
            return ("Error: %s needs the user's confirmation each time, so a routine from the LLM may "
                    "not switch it; define it from the REPL or a signed command" % name)
        return None
    name = _needs(dev, tool, args)
    if name is None:
        return None
    dev.pending = (tool, args, time.ticks_add(time.ticks_ms(), limits.CONFIRM_WINDOW_S * 1000))
    return ("Error: %s needs the user's confirmation; nothing was switched. Ask the user to answer "
            "'yes' within %d s to do it." % (name, limits.CONFIRM_WINDOW_S))


def take(dev, text):
    """The held call if `text` confirms it in time, else None. Any other ask drops it."""
    pending, dev.pending = dev.pending, None
    if pending is None:
        return None
    if text.strip().lower().strip(".!") not in WORDS:
        return None
    if time.ticks_diff(pending[2], time.ticks_ms()) < 0:
        return None
    return pending[0], pending[1]
