# The log ring over MQTT for `wisp logs`: new lines go out on wisp/<id>/log at most every
# FEED_MS (one small message, not one per line, so a busy log cannot flood the link or the
# heap), and a message on wisp/<id>/log/get sends the whole ring. QoS 0: logs are best effort.
import asyncio
import json
import time

from wisp import log as wlog
from wisp.sched import unix_time

FEED_MS = 2000


def lines(n):
    """The last n ring lines as [unix seconds, text]: the host shows them in its own time zone."""
    shift = round(unix_time() - time.time())   # the board epoch (2000 or 1970), whole seconds
    out = []
    for line in wlog.recent(n):
        t, _sep, text = line.partition(" ")
        out.append([int(t) + shift if t.isdigit() else 0, text])
    return out


async def send(dev, n, ring=False):
    """The last n lines, a line per piece: the whole ring is ~2 KB of JSON, one block that a heap
    fragmented after hours of running may not have (the MQTT client takes a list of pieces)."""
    out = ['{"v": 1, "ring": true, "lines": [' if ring else '{"v": 1, "lines": [']
    for e in lines(n):
        out.append(("" if len(out) == 1 else ", ") + json.dumps(e))
    out.append("]}")
    await dev.link.publish(dev.topic("log"), out, False, 0, 0)


async def run(dev):
    sent = wlog.count
    while True:
        await asyncio.sleep_ms(FEED_MS)
        new = wlog.count - sent
        if new and dev.link.up.is_set():
            sent = wlog.count
            try:
                await send(dev, min(new, wlog.RING_SIZE))
            except Exception as e:  # never let the feed take the agent down
                print("wisp: log feed: %r" % (e,))
