"""Power cuts during memory writes: SIGKILL the real MicroPython unix port at random moments
while it saves facts, many times over, and check that a fresh interpreter always loads a
store that is exactly the state after one complete write (never torn, never older than the
last confirmed write)."""
import random
import time

from tests.firmware.powercut import Writer

CUTS = 40
KEYS = 20              # facts cycled through; ~3.2 KB of values, under MAX_FACTS_BYTES
MAX_CUT_DELAY_S = 0.04
START_TIMEOUT_S = 10

# Writes fact n as k<n % KEYS> = "<n>:" + filler of varying length, printing "OK n" once set()
# returned. At start it prints what a fresh Memory loaded, then continues after the newest write.
WRITER = r"""
import json
from wisp.memory import Memory
m = Memory(lambda line: print("LOG", line))
pairs = m.pairs()
print("STATE", json.dumps(pairs))
n = max([int(v.split(":")[0]) for _k, v in pairs] or [-1]) + 1
while True:
    m.set("k%d" % (n % KEYS), "%d:" % n + "x" * (n * 37 % 150))
    print("OK", n)
    n += 1
""".replace("KEYS", str(KEYS))


def expected_value(n):
    return "%d:" % n + "x" * (n * 37 % 150)


def check_consistent(pairs, confirmed):
    """pairs must be exactly the store after write m, with confirmed <= m <= confirmed + 1."""
    values = dict(pairs)
    assert len(values) == len(pairs), "duplicate keys: %r" % pairs
    if not pairs:
        assert confirmed < 0, "store empty after write %d was confirmed" % confirmed
        return -1
    m = max(int(v.split(":")[0]) for v in values.values())
    assert confirmed <= m <= confirmed + 1, "store holds write %d, last confirmed %d" % (m, confirmed)
    for j in range(KEYS):
        latest = max((n for n in range(j, m + 1, KEYS)), default=None)
        want = None if latest is None else expected_value(latest)
        assert values.get("k%d" % j) == want, "k%d is %r, want %r (state after write %d)" % (
            j, values.get("k%d" % j), want, m)
    assert pairs[-1][0] == "k%d" % (m % KEYS), "the newest write is not the most recent fact"
    return m


def test_store_survives_repeated_power_cuts(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    flash = tmp_path / "flash"
    flash.mkdir()
    rng = random.Random(1234)
    confirmed, mid_write, t0 = -1, 0, time.monotonic()
    for _cut in range(CUTS):
        w = Writer(flash, script)
        assert w.started.wait(START_TIMEOUT_S), "writer did not start"
        # what a fresh interpreter has loaded is durable: later loads must not go back before it
        confirmed = max(confirmed, check_consistent(w.state(), confirmed))
        time.sleep(rng.uniform(0, MAX_CUT_DELAY_S))
        w.kill()
        assert not [ln for ln in w.lines if ln.startswith("LOG")], w.lines[:5]
        if w.confirmed() is not None:
            confirmed = w.confirmed()
        if (flash / "memory.tmp").exists():
            mid_write += 1  # this cut landed inside a save
        assert not (flash / "memory.bad").exists(), "the store was found corrupt"
    final = Writer(flash, script)  # one more fresh interpreter reads the last state
    assert final.started.wait(START_TIMEOUT_S)
    last = check_consistent(final.state(), confirmed)
    final.kill()
    print("power cuts: %d, %d inside a save, %d writes, %.1f s" % (CUTS, mid_write, last + 1, time.monotonic() - t0))
    assert last > CUTS, "too few writes to mean anything: %d" % last
    assert mid_write > 0, "no cut landed inside a save; the test proves nothing"
