# System tools: what the device is and how it is doing, and a reboot behind a guard word.
import asyncio
import time

from wisp import VERSION, limits

CONFIRM_WORD = "reboot"


def _uptime(s):
    if s < 3600:
        return "%d m %d s" % (s // 60, s % 60)
    return "%d d %d h %d m" % (s // 86400, s // 3600 % 24, s // 60 % 60)


def _rssi(board):
    r = board.rssi()
    return "no Wi-Fi" if r is None else "%d dBm" % r


def _collect():
    # report what is really in use, not what the collector has not reclaimed yet
    import gc
    gc.collect()


async def system_info(dev, args):
    _collect()
    b = dev.board
    return "fw %s, board %s, id %s, up %s, heap %d B free, rssi %s, boots %d" % (
        VERSION, b.name, dev.id, _uptime(b.uptime_s()), b.free_heap(), _rssi(b), dev.boots)


async def system_health(dev, args):
    from wisp import log
    _collect()
    b = dev.board
    heap, rssi, warn = b.free_heap(), b.rssi(), []
    if heap < limits.HEALTH_MIN_HEAP:
        warn.append("low heap")
    if rssi is None or rssi < limits.HEALTH_MIN_RSSI:
        warn.append("weak or no Wi-Fi")
    return "%s: heap %d KB free, up %s, rssi %s, errors logged %d" % (
        "warn: " + ", ".join(warn) if warn else "ok", heap // 1024, _uptime(b.uptime_s()), _rssi(b), log.errors)


async def system_reboot(dev, args):
    if args.get("_llm") == 2:  # the LLM's job or routine: no user asked (confirm.py)
        return "Error: not rebooting: an action the LLM set up cannot reboot"
    if args["confirm"] != CONFIRM_WORD:
        return ("Error: not rebooting: confirm must be the word '%s', sent only when the user asked "
                "for a reboot" % CONFIRM_WORD)
    asyncio.create_task(_reboot_later(dev))
    return "ok: rebooting in about %d s" % (limits.REBOOT_DELAY_MS // 1000 + 1)


async def _reboot_later(dev):
    await asyncio.sleep_ms(limits.REBOOT_DELAY_MS)
    # let the agent publish its reply first (dev.busy: an ask is being answered)
    t0 = time.ticks_ms()
    while dev.busy and time.ticks_diff(time.ticks_ms(), t0) < limits.REBOOT_WAIT_MAX_MS:
        await asyncio.sleep_ms(100)
    try:
        await dev.event("reboot", "rebooting on request")
    except Exception:
        pass  # the link may be down; reboot anyway
    dev.board.reset()
