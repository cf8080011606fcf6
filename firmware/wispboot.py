# Picks the firmware slot before anything of wisp loads, and guards a freshly updated one.
# ota.json (written by wisp/ota.py) names the slot an update installed: ota/a or ota/b, each a
# whole wisp/ package of .mpy files; none means the wisp/ package on the flash root. This file sits
# outside wisp/ on purpose: an update replaces wisp/, never this, so a broken update cannot break
# the way back. Kept tiny; it runs before everything else and must never fail the boot itself.
import json
import os
import sys

TRIAL_BOOTS = 3          # boots a new version gets to confirm itself before the previous returns
HEALTH_S = 60            # seconds after boot by which it must be connected (ota.json may say less)
_sync = getattr(os, "sync", None)


def _load():
    try:
        with open("ota.json") as f:
            return json.load(f)
    except OSError:
        try:  # a cut between unlink and rename (FAT): a whole .tmp (newline last) is the new pointer
            with open("ota.tmp") as f:
                p = json.load(f)
                f.seek(-1, 2)
                if f.read(1) != "\n":  # torn: MicroPython before 1.26 parses '{"cur": "b"' as whole
                    return None
            os.rename("ota.tmp", "ota.json")
            return p
        except Exception:
            return None
    except Exception:  # unreadable pointer: the flash-root firmware is the safe choice
        return None


def _save(p):
    with open("ota.tmp", "w") as f:
        f.write(json.dumps(p) + "\n")  # newline last, as wisp.store writes: _load's mark of a whole file
    if _sync:
        _sync()
    os.rename("ota.tmp", "ota.json")


def rollback(p, why):
    """Point back at the previous slot, saying why; the next boot runs it."""
    p["result"] = "rolled back from %s to %s: %s" % (p.get("ver"), p.get("prev_ver"), why)
    p["cur"], p["ver"], p["trial"] = p.get("prev"), p.get("prev_ver"), False
    p["state"] = "rolled back"
    _save(p)
    print("ota: " + p["result"])


def _reset():
    # the one use of machine outside wisp/hal: the slot's hal may be the very part that is broken
    try:
        import machine
        machine.reset()
    except (ImportError, AttributeError):
        pass
    raise SystemExit(3)  # the unix port cannot reset: its launcher starts it again


def select():
    """The pointer after this boot is counted, with its slot first on sys.path; None: flash root."""
    try:
        p = _load()
        if not isinstance(p, dict):
            return None
        if p.get("trial"):
            p["tries"] = p.get("tries", 0) + 1
            if p["tries"] > TRIAL_BOOTS:
                rollback(p, "not confirmed within %d boots" % TRIAL_BOOTS)
            else:
                _save(p)
        if p.get("cur") in ("a", "b"):
            sys.path.insert(0, "ota/" + p["cur"])
        return p
    except Exception as e:  # flash full or torn: run what the pointer said, or the flash root
        print("ota: boot pointer: %r" % (e,))
        return None


async def _deadline(p):
    import asyncio
    await asyncio.sleep_ms(int(p.get("health_s") or HEALTH_S) * 1000)
    q = _load()
    if q and q.get("trial"):
        rollback(q, "not connected within %s s" % (p.get("health_s") or HEALTH_S))
        _reset()


async def _trial(app, p):
    import asyncio
    asyncio.create_task(_deadline(p))
    await app.main()


def start():
    """wisp.app to start (main.py drops this module first: ~2 KB of heap on a 32-bit port), or None
    once a version on trial has run here, watched by the deadline task."""
    p = select()
    trial = p is not None and p.get("trial")
    try:
        import wisp.app as app
    except Exception as e:
        if not trial:
            raise
        rollback(p, "import failed: %r" % (e,))
        _reset()
    if not trial:
        return app
    import asyncio
    try:
        asyncio.run(_trial(app, p))
    except KeyboardInterrupt:  # Ctrl-C at the serial REPL, as app.start() takes it; the trial goes on
        from wisp import repl  # at the next boot (its count was taken), not rolled back for it
        repl.stopped()
    except Exception as e:
        rollback(p, "stopped: %r" % (e,))
        _reset()
