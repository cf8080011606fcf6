# Analog input on named adc pins: the raw 12-bit reading and the voltage it stands for.


async def adc_read(dev, args):
    name = args["pin"]
    hw = dev.pins[name].hw
    raw = hw.read()
    # key=value fields, so a routine can bind them ("pick": "volts"); the last one binds by default
    return "%s: raw=%d of 4095, volts=%.2f V" % (name, raw, hw.volts())
