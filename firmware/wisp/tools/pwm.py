# PWM on named pwm pins (dimmers, fans, servos): duty in percent, frequency optional.


async def pwm_set(dev, args):
    name, duty = args["pin"], args["duty_percent"]
    pin = dev.pins[name]
    err = pin.write(duty, dev.pin_changed)
    if err:
        return err
    freq = args.get("freq")
    if freq is not None and freq != pin.freq:
        pin.set_freq(freq)
    await dev.pin_changed(name)
    return "ok: %s=%s%% at %d Hz" % (name, duty, pin.freq)
