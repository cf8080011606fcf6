# I2C on the bus from config ("i2c": {"scl": 22, "sda": 21, "freq": 400000}), opened on first
# use. Addresses, lengths and bytes arrive checked by the registry; wiring faults come back as
# readable errors.
from wisp import limits
from wisp.pins import pin_error


def _bus_error(dev, cfg):
    if not isinstance(cfg, dict):
        return "Error: no I2C bus configured; add \"i2c\": {\"scl\": 22, \"sda\": 21} to config.json"
    used = {p.num: n for n, p in dev.pins.items()}
    for role in ("scl", "sda"):
        num = cfg.get(role)
        err = pin_error(num, dev.board, used, "i2c." + role)
        if err:
            return "Error: i2c config: " + err
        if num in dev.board.input_only_pins:
            return "Error: i2c config: GPIO%d is input-only and cannot drive %s" % (num, role)
        used[num] = "i2c." + role
    freq = cfg.get("freq", limits.I2C_DEFAULT_FREQ)
    if not isinstance(freq, int) or not limits.I2C_FREQ_MIN <= freq <= limits.I2C_FREQ_MAX:
        return "Error: i2c config: freq must be %d-%d Hz" % (limits.I2C_FREQ_MIN, limits.I2C_FREQ_MAX)
    return None


def _bus(dev):
    """(bus, None) or (None, error text). The bus is kept on the device once opened."""
    bus = getattr(dev, "i2c_bus", None)
    if bus is None:
        cfg = dev.config.get("i2c")
        err = _bus_error(dev, cfg)
        if err:
            return None, err
        bus = dev.board.i2c(cfg["scl"], cfg["sda"], cfg.get("freq", limits.I2C_DEFAULT_FREQ))
        dev.i2c_bus = bus
    return bus, None


def _fail(addr, e):
    if isinstance(e, OSError):
        return "Error: no answer from I2C device 0x%02x (check address, wiring, pull-ups)" % addr
    return "Error: I2C 0x%02x: %s" % (addr, e)


def _hex(data):
    return " ".join("%02x" % b for b in data)


async def i2c_scan(dev, args):
    bus, err = _bus(dev)
    if err:
        return err
    found = bus.scan()
    if not found:
        return "i2c: no devices found (check wiring and pull-ups)"
    return "i2c: %d found: %s" % (len(found), ", ".join("0x%02x" % a for a in found))


async def i2c_read(dev, args):
    bus, err = _bus(dev)
    if err:
        return err
    addr, n, reg = args["addr"], args["n"], args.get("reg")
    try:
        data = bus.readfrom(addr, n) if reg is None else bus.readfrom_mem(addr, reg, n)
    except Exception as e:
        return _fail(addr, e)
    where = "0x%02x" % addr if reg is None else "0x%02x reg 0x%02x" % (addr, reg)
    return "%s: %s (hex)" % (where, _hex(data))


async def i2c_write(dev, args):
    bus, err = _bus(dev)
    if err:
        return err
    addr, data, reg = args["addr"], bytes(args["data"]), args.get("reg")
    try:
        if reg is None:
            bus.writeto(addr, data)
        else:
            bus.writeto_mem(addr, reg, data)
    except Exception as e:
        return _fail(addr, e)
    return "ok: wrote %d bytes to 0x%02x" % (len(data), addr)


async def i2c_write_read(dev, args):
    bus, err = _bus(dev)
    if err:
        return err
    addr, data, n = args["addr"], bytes(args["data"]), args["n"]
    try:
        bus.writeto(addr, data, False)  # repeated start: no stop between write and read
        got = bus.readfrom(addr, n)
    except Exception as e:
        return _fail(addr, e)
    return "0x%02x: %s (hex)" % (addr, _hex(got))
