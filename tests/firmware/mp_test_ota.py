# wispboot (slot choice, trial boots, rollback) and wisp.ota's offer checks, on the unix port.
import asyncio
import json
import os
import sys

from fakeboard import make_device
from mpcheck import eq

import wispboot
from wisp import ota
from wisp.sched import unix_time

GOOD = {"v": 1, "dev": "t1", "ver": "0.2.0", "man": "0" * 64, "msize": 100, "size": 5000, "files": 3,
        "force": False, "health_s": 60}


def _pointer(p):
    with open("ota.json", "w") as f:
        f.write(json.dumps(p))


def _load():
    with open("ota.json") as f:
        return json.load(f)


def _offer(**changes):
    o = dict(GOOD, ts=unix_time())  # signed just now
    o.update(changes)
    return o


def test_no_pointer_boots_the_flash_root():
    path = list(sys.path)
    eq(wispboot.select(), None)
    eq(sys.path, path)


def test_a_trial_version_gets_three_boots_then_the_previous_returns():
    _pointer({"cur": "b", "ver": "0.3.0", "prev": "a", "prev_ver": "0.2.0", "trial": True, "tries": 0})
    for n in (1, 2, 3):
        p = wispboot.select()
        eq((p["cur"], p["tries"]), ("b", n))
        eq(sys.path[0], "ota/b")
        sys.path.pop(0)
    p = wispboot.select()
    eq((p["cur"], p["ver"], p["trial"], p["state"]), ("a", "0.2.0", False, "rolled back"))
    eq(sys.path.pop(0), "ota/a")
    eq(_load()["result"], "rolled back from 0.3.0 to 0.2.0: not confirmed within 3 boots")


def test_rolling_back_the_first_update_returns_to_the_flash_root():
    _pointer({"cur": "a", "ver": "0.2.0", "prev": None, "prev_ver": "0.1.0", "trial": True, "tries": 3})
    path = list(sys.path)
    p = wispboot.select()
    eq((p["cur"], p["ver"]), (None, "0.1.0"))
    eq(sys.path, path)


def test_a_pointer_cut_between_unlink_and_rename_is_recovered():
    wispboot._save({"cur": "a", "ver": "0.2.0", "trial": False})
    os.rename("ota.json", "ota.tmp")
    eq(wispboot.select()["cur"], "a")
    sys.path.pop(0)
    eq(_load()["cur"], "a")


def test_a_pointer_cut_while_written_boots_the_flash_root():
    # a torn pointer taken for a whole one would boot the new slot with no trial and no way back
    wispboot._save({"cur": "b", "ver": "0.3.0", "prev": "a", "prev_ver": "0.2.0", "trial": True, "tries": 0})
    os.rename("ota.json", "ota.tmp")
    with open("ota.tmp") as f:
        whole = f.read()
    path = list(sys.path)
    for n in range(len(whole)):
        with open("ota.tmp", "w") as f:
            f.write(whole[:n])
        eq((n, wispboot.select()), (n, None))
        eq(sys.path, path)
    with open("ota.tmp", "w") as f:
        f.write(whole)
    eq(wispboot.select()["tries"], 1)
    eq(sys.path.pop(0), "ota/b")


def test_an_unreadable_pointer_boots_the_flash_root():
    with open("ota.json", "w") as f:
        f.write('{"cur": "a", "tri')
    path = list(sys.path)
    eq(wispboot.select(), None)
    eq(sys.path, path)


def test_offer_checks():
    dev = make_device()
    eq(ota.check(dev, _offer()), None)
    eq(ota.check(dev, _offer(dev="t2")), "bundle is for device 't2', not this one")
    eq(ota.check(dev, _offer(ver="0.0.9")), "downgrade from 0.1.0 to 0.0.9 refused (not forced)")
    eq(ota.check(dev, _offer(ver="0.0.9", force=True)), None)
    eq(ota.check(dev, _offer(ver="0.1.0")), "already running 0.1.0")
    eq(ota.check(dev, _offer(ver="1.x")), "version '1.x' is not dotted numbers")
    eq(ota.check(dev, _offer(size=10 ** 7)), "sizes, file count or health deadline out of bounds")
    eq(ota.check(dev, _offer(files=0)), "sizes, file count or health deadline out of bounds")
    eq(ota.check(dev, _offer(health_s=1)), "sizes, file count or health deadline out of bounds")
    eq(ota.check(dev, _offer(man=None)), "manifest hash missing")
    eq(ota.check(dev, [1]), "not a version 1 offer")
    eq(ota.check(dev, _offer(v=True)), "not a version 1 offer")  # JSON true: a bool, equal to 1 in Python
    # a recorded offer replayed later, e.g. a forced downgrade, or one with no time at all
    stale = "not signed in the last 300 s by this device's clock ('ts'): send it anew"
    for ts in (unix_time() - 301, unix_time() + 60, None, "now"):
        eq(ota.check(dev, _offer(ver="0.0.9", force=True, ts=ts)), stale)


def test_manifest_paths_stay_inside_the_package():
    for bad in ("boot.mpy", "wisp/../main.mpy", "/wisp/x.mpy", "wisp/x.py", "wisp//x.mpy", "wisp/X.mpy",
                "wisp/a b.mpy", "wisp/other.bin", "strings.bin", "wisp/tools/strings.bin"):
        eq((bad, ota._good_path(bad)), (bad, False))
    eq(ota._good_path("wisp/tools/gpio.mpy"), True)
    eq(ota._good_path("wisp/strings.bin"), True)  # the strings the compiled modules read


def test_clear_removes_a_slot_tree():
    os.mkdir("ota")
    os.mkdir("ota/a")
    os.mkdir("ota/a/wisp")
    with open("ota/a/wisp/x.mpy", "w") as f:
        f.write("x")
    ota.clear("ota/a")
    eq(os.listdir("ota"), [])


async def test_an_oversized_offer_is_refused_as_too_large():
    # the link skips a payload over MAX_PAYLOAD unread; the offer's state must say so, not that
    # its signature was wrong (no signature was ever read)
    from mpcheck import check, until

    from wisp import app, limits
    dev = make_device(extra={"key": "ab" * 32})
    app._router(dev, None, None, None)(dev.topic("ota/offer"), None, limits.MAX_PAYLOAD + 904)
    check(await until(lambda: dev.link.on("wisp/t1/ota/state")), "no ota/state")
    eq(dev.link.on("wisp/t1/ota/state")[-1]["text"],
       "offer refused: 5000 bytes, over the device's limit of %d for a message" % limits.MAX_PAYLOAD)


def test_an_offer_to_a_device_whose_clock_is_not_set_says_so():
    # a board that got no NTP time counts from 2000: every offer was refused as "not signed in the last
    # 300 s by this device's clock ('ts'): send it anew", which no offer sent anew could ever change
    from wisp import sched
    real = sched.unix_time
    sched.unix_time = lambda: 946684800 + 60  # a minute after boot, on a clock that counts from 2000
    try:
        eq(ota.check(make_device(), _offer(ts=real())),
           "the device clock is not set (no NTP time yet), so the offer's age cannot be checked")
    finally:
        sched.unix_time = real


async def test_update_files_of_another_shape_are_dropped_not_raised_at_every_connect():
    # an ota.json or ota/offer.json that is JSON but not an object (hand-edited, another version)
    # raised AttributeError at every connect, and the pointer one refused every later offer
    from mpcheck import check
    os.mkdir("ota")
    for pointer, offer, got in (("[1]", None, None), (None, "[]", None), ('"x"', "7", None),
                                (None, json.dumps(dict(GOOD, slot="a")), "[]")):
        for path, text in (("ota.json", pointer), ("ota/offer.json", offer), ("ota/got.json", got)):
            if text is not None:
                with open(path, "w") as f:
                    f.write(text)
        dev = make_device()
        await ota.on_connect(dev)  # raised
        job = getattr(dev, "ota_job", None)
        if got is None:
            check(job is None and "offer.json" not in os.listdir("ota"), (pointer, offer, os.listdir("ota")))
        else:  # a progress file of another shape restarts the fetch from the start, not drop the update
            await asyncio.sleep_ms(50)
            check(dev.ota_job is job and "offer.json" in os.listdir("ota"), "the update was dropped")
            job.stop = True
            job.wake()
            await asyncio.sleep_ms(50)
        for path in ("ota.json", "ota/offer.json", "ota/got.json"):
            try:
                os.remove(path)
            except OSError:
                pass
