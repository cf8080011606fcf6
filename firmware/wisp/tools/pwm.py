# PWM on named pwm pins (dimmers, fans, servos): duty in percent, frequency optional.


async def pwm_set(dev, args):
    name, duty = args["pin"], args["duty_percent"]
    pin = dev.pins[name]
    err = None
    freq = args.get("freq")
    if args.get("_llm") and pin.confirm:  # see gpio._set; a new frequency moves a servo too
        from wisp import confirm
        err = confirm.gate(dev, pin, duty, 0, args["_llm"], freq if freq != pin.freq else None)
    err = err or pin.write(duty, dev.pin_changed, 0, args.get("_llm"))  # see gpio._set
    if err:
        return err
    if freq is not None and freq != pin.freq:
        pin.set_freq(freq)
    await dev.pin_changed(name)
    return "ok: %s=%s%% at %d Hz" % (name, duty, pin.freq)
