# Per-pin confirmation: a pin marked "confirm": true in config.json is never switched on by an
# action whose chain began with the LLM, however it got there: its own call, a routine it
# defined or ran, a schedule it added, or a "$name" bound from a fact it remembered. The origin
# travels down the call path (tools.run's llm, routines, jobs) to the tool that writes the pin,
# which asks gate() here. In an ask the write is held and a following ask of "yes" (words from
# the user, which the LLM cannot send) carries it out; with no one to ask (its schedule, its
# routine run by the owner) it is refused. Switching off, and actions the owner began (direct
# commands, Home Assistant, the fast path, the owner's schedules and routines) need no "yes".
# hold() serves other calls the same way: the LLM moving the time zone, which times the owner's
# schedules (tools/clock.py).
import time

from wisp import limits

WORDS = ("yes", "y", "confirm", "confirmed", "ok", "okay", "do it", "yes please")


def gate(dev, pin, level, off_after_ms, llm, freq=None):
    """Called by the tools that write pins when the chain began with the LLM (llm 1: in an ask,
    2: no one to ask) and the pin is a confirm pin: an error text when it must wait, else None.
    freq: a new PWM frequency, which moves a servo or valve as a duty does."""
    if freq is None and (not level or (level == pin.read() and not pin._off_task)):
        return None  # off, or no change (an "on" while a timer runs moves its off): never held
    if pin.mode == "pwm":
        call = ("pwm_set", {"pin": pin.name, "duty_percent": level})
        if freq is not None:
            call[1]["freq"] = freq
    elif off_after_ms:
        call = ("gpio_pulse", {"pin": pin.name, "ms": off_after_ms})
    else:
        call = ("gpio_write", {"pin": pin.name, "value": 1})
    return hold(dev, call, llm, pin.name, "switched")


def hold(dev, call, llm, what, done):
    """Hold call (tool, args) for the user's "yes" when the LLM asked for it in an ask (llm 1);
    refuse it when no one can be asked (llm 2). The error text for the LLM."""
    if llm != 1:
        return ("Error: %s needs the user's confirmation, and an action the LLM set up (a routine or "
                "schedule) cannot ask for it; nothing was %s" % (what, done))
    dev.pending = (call[0], call[1], time.ticks_add(time.ticks_ms(), limits.CONFIRM_WINDOW_S * 1000))
    return ("Error: %s needs the user's confirmation; nothing was %s. Ask the user to answer "
            "'yes' within %d s to do it." % (what, done, limits.CONFIRM_WINDOW_S))


def held_line(dev):
    """The device's own words on the call it holds, added to the LLM's reply: the user's "yes"
    runs exactly this, whatever the model's text says it is."""
    tool, args = dev.pending[0], dev.pending[1]
    return "[held: %s %s; answer yes within %d s to run it]" % (
        tool, " ".join("%s=%s" % (k, args[k]) for k in sorted(args)), limits.CONFIRM_WINDOW_S)


def take(dev, text, t0):
    """The held call if `text`, received at ticks t0, confirms it in time, else None. Any other
    ask drops it; so does a "yes" received before the hold (it was not said to this call)."""
    pending, dev.pending = dev.pending, None
    if pending is None:
        return None
    if text.strip().lower().strip(".!") not in WORDS:
        return None
    if time.ticks_diff(pending[2], time.ticks_ms()) < 0 or \
            time.ticks_diff(pending[2], t0) > limits.CONFIRM_WINDOW_S * 1000:
        return None
    return pending[0], pending[1]
