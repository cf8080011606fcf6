# GPIO tools on named pins. Arguments arrive already checked by the registry.


async def gpio_write(dev, args):
    name = args["pin"]
    value = 1 if args["value"] else 0
    dev.pins[name].write(value)
    await dev.pin_changed(name)
    return "ok: %s=%d" % (name, value)


async def gpio_read(dev, args):
    name = args["pin"]
    return "%s=%d" % (name, dev.pins[name].read())
