# Home Assistant: what the rest of the firmware calls. The work lives in two modules loaded
# only while needed and unloaded after: wisp/ha_discovery.py (discovery configs, on every
# connect) and wisp/ha_set.py (`set/<name>` commands and the restart button), so neither holds
# heap between uses, nor the other's while one runs.
from wisp import limits, unload

RESTART = "_restart"           # set/_restart: the restart button (a pin of that name is shadowed)
PRESS = "reboot"               # the button's payload, the same guard word as system_reboot


def opt(dev, key, default):
    """Config `ha.<key>`, else default (wisp/config.py checked the topics and the url)."""
    ha = dev.config.get("ha")
    return ha.get(key, default) if isinstance(ha, dict) else default


def prefix(dev):
    return opt(dev, "prefix", "homeassistant")


def enabled(dev):
    return opt(dev, "discovery", True) is not False


def diag_period_s(dev):
    """Seconds between diagnostics publishes, 0 for none (discovery off or `ha.diagnostics_s` 0)."""
    s = opt(dev, "diagnostics_s", limits.DIAG_INTERVAL_S)
    return s if enabled(dev) and isinstance(s, int) and s > 0 else 0


async def announce(dev):
    """Publish every discovery config; clear the ones (and the retained states) that left: all
    configs with discovery off, so Home Assistant drops the entities. Each config is built by
    wisp/ha_discovery.py, loaded for that moment only: while the broker acks (most of an announce
    on a TLS link, beside whatever the device is asked then), its code and tables hold no heap."""
    i = 0
    while enabled(dev):
        got = _discovery("config", dev, i)
        if got is None:
            break
        if not await dev.link.publish(got[0], got[1], True, 1, 0):
            return  # link dropped: the next connect announces again
        got = None
        i += 1
    for old in _discovery("stale", dev):
        if not await dev.link.publish(old, b"", True, 1, 0):  # empty retained: Home Assistant removes it
            return
    _discovery("stale", dev, True)


def _discovery(what, *args):
    from wisp import ha_discovery
    try:
        return getattr(ha_discovery, what)(*args)
    finally:
        del ha_discovery
        unload("wisp.ha_discovery")


async def on_set(dev, name, payload):
    """`set/<name>` from Home Assistant (wisp/ha_set.py)."""
    from wisp import ha_set
    try:
        await ha_set.on_set(dev, name, payload)
    finally:
        del ha_set
        unload("wisp.ha_set")
