# GPIO tools on named pins. Arguments arrive already checked by the registry; the pin's own
# policy (rate limit, max on-time) is enforced by wisp/pins.py and reported as an error text.


async def _set(dev, name, value, off_after_ms=0, llm=0, mark=None):
    pin = dev.pins[name]
    if llm and pin.confirm:  # the LLM began this chain: a confirm pin waits for the user's "yes"
        from wisp import confirm
        err = confirm.gate(dev, pin, value, off_after_ms, llm)
        if err:
            return err
    # its level is what the LLM wrote (or toggled from what it wrote): a routine reading it acts for the LLM
    err = pin.write(value, dev.pin_changed, off_after_ms, llm or mark)
    if err:
        return err
    await dev.pin_changed(name)
    return None


async def gpio_write(dev, args):
    name = args["pin"]
    value = 1 if args["value"] else 0
    return await _set(dev, name, value, 0, args.get("_llm")) or "ok: %s=%d" % (name, value)


async def gpio_read(dev, args):
    name = args["pin"]
    return "%s=%s" % (name, dev.pins[name].read())  # %s: a pwm duty may be 37.5


async def gpio_toggle(dev, args):
    name = args["pin"]
    pin = dev.pins[name]
    value = 0 if pin.read() else 1
    return await _set(dev, name, value, 0, args.get("_llm"), pin.by_llm) or "ok: %s=%d" % (name, value)


async def gpio_pulse(dev, args):
    name, ms = args["pin"], args["ms"]
    return await _set(dev, name, 1, ms, args.get("_llm")) or "ok: %s=1 for %d ms, then 0" % (name, ms)
