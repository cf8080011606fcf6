# Log lines go to the console (the serial REPL) and into a small ring buffer that
# `wisp.repl` and `wisp logs` (over MQTT, wisp/logfeed.py) can show after the fact. Each ring
# line starts with time.time() in the board's own epoch; readers turn it into a local time.
import time

RING_SIZE = 16       # lines kept; the console (serial) has them all
RING_LINE = 120      # characters kept per line: 16 x 120 bounds the ring at ~2 KB of heap
_ring = []
errors = 0
count = 0            # lines ever logged: readers of the ring tell new lines from seen ones


def log(msg):
    global errors, count
    line = "%d %s" % (time.time(), msg)
    if "rror" in msg or "failed" in msg:
        errors += 1
    count += 1
    _ring.append(line[:RING_LINE])
    if len(_ring) > RING_SIZE:
        _ring.pop(0)
    print("wisp:", msg)


def rarely(count):
    """True for the 1st, 2nd, 4th, 8th... occurrence: a flood is reported, not logged in full."""
    return count & (count - 1) == 0


def recent(n=RING_SIZE):
    return _ring[-n:]
