# GPIO tools on named pins. Arguments arrive already checked by the registry; the pin's own
# policy (rate limit, max on-time) is enforced by wisp/pins.py and reported as an error text.


async def _set(dev, name, value, off_after_ms=0):
    err = dev.pins[name].write(value, dev.pin_changed, off_after_ms)
    if err:
        return err
    await dev.pin_changed(name)
    return None


async def gpio_write(dev, args):
    name = args["pin"]
    value = 1 if args["value"] else 0
    return await _set(dev, name, value) or "ok: %s=%d" % (name, value)


async def gpio_read(dev, args):
    name = args["pin"]
    return "%s=%d" % (name, dev.pins[name].read())


async def gpio_toggle(dev, args):
    name = args["pin"]
    value = 0 if dev.pins[name].read() else 1
    return await _set(dev, name, value) or "ok: %s=%d" % (name, value)


async def gpio_pulse(dev, args):
    name, ms = args["pin"], args["ms"]
    return await _set(dev, name, 1, ms) or "ok: %s=1 for %d ms, then 0" % (name, ms)
