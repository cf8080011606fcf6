# wisp.backup: all state (facts, routines, jobs, timezone) out as one JSON document and back in,
# all or nothing, so a reflash does not wipe the agent's memory.
import json
import os

from fakeboard import make_device, run
from mpcheck import eq

from wisp import backup
from wisp.memory import Memory
from wisp.routines import Routines
from wisp.sched import Scheduler
from wisp.tools import clock

NOW = 1767225600  # 2026-01-01 00:00 UTC: a clock NTP has set
STATE_FILES = ("memory.json", "routines.json", "jobs.json", "tz.json")


def _wipe():
    for f in STATE_FILES:
        try:
            os.remove(f)
        except OSError:
            pass


def _device():
    """A device as after boot, built from whatever the flash root holds."""
    dev = make_device()
    dev.memory = Memory()
    dev.routines = Routines(dev)

    async def fire(job):
        pass
    dev.sched = Scheduler(dev, fire, now=lambda: NOW, log=lambda line: None)
    return dev


def _files():
    """What the flash holds (jobs in name order: a rollback may re-add them in another order)."""
    out = {}
    for f in STATE_FILES:
        try:
            with open(f) as fh:
                out[f] = json.load(fh)
        except OSError:
            out[f] = None
    if out["jobs.json"]:
        out["jobs.json"]["jobs"].sort(key=lambda j: j["name"])
    return out


def _populate():
    _wipe()
    dev = _device()
    dev.memory.set("name", "Ada")
    dev.memory.set("plants", 3)
    dev.routines.define("night", [{"tool": "gpio_write", "args": {"pin": "porch_light", "value": 0}}])
    dev.sched.add("0 22 * * *", {"routine": "night"}, "lights_out", None, "once")
    dev.sched.add("every 2h", {"prompt": "water the plants?"}, "plants")
    run(clock.timezone_set(dev, {"tz": "CET-1CEST,M3.5.0,M10.5.0/3"}))
    return dev


def test_export_then_restore_after_a_reflash_brings_everything_back():
    doc = json.loads(json.dumps(backup.export(_populate())))  # through JSON, as a user would keep it
    eq(doc["v"], 1)
    eq(doc["facts"], [["name", "Ada"], ["plants", 3]])
    eq(sorted(j["name"] for j in doc["jobs"]), ["lights_out", "plants"])
    _wipe()  # the reflash
    dev = _device()
    eq((dev.memory.items(), dev.routines.list(), dev.sched.jobs()), ([], [], []))
    summary = backup.restore(dev, doc)
    eq(summary, "ok: restored 1 routines, tz CET-1CEST,M3.5.0,M10.5.0/3, 2 jobs, 2 facts")
    after = _device()  # and it is on flash, not just in RAM
    eq(after.memory.items(), [("plants", 3), ("name", "Ada")])
    eq(after.routines.get("night"), [{"tool": "gpio_write", "args": {"pin": "porch_light", "value": 0}}])
    jobs = dict((j["name"], j) for j in after.sched.jobs())
    eq((jobs["lights_out"]["spec"], jobs["lights_out"]["action"], jobs["lights_out"]["missed"]),
           ("0 22 * * *", {"routine": "night"}, "once"))
    eq(jobs["plants"]["action"], {"prompt": "water the plants?"})
    eq(after.config["tz"], "CET-1CEST,M3.5.0,M10.5.0/3")
    eq(jobs["lights_out"]["next"], NOW + 21 * 3600)  # 22:00 CET = 21:00 UTC


def _bad(doc, *fragments):
    dev = _populate()
    before = (_files(), backup.export(dev))
    try:
        backup.restore(dev, doc)
    except ValueError as e:
        for frag in fragments:
            if frag not in str(e):
                raise Exception("%r not in %r" % (frag, str(e)))
    else:
        raise Exception("restored %r" % (doc,))
    eq((_files(), backup.export(dev)), before)
    eq(backup.export(_device()), before[1])


def test_a_bad_document_changes_nothing():
    good = backup.export(_populate())
    _bad("not a dict", "JSON object")
    _bad({"v": 2}, "\"v\": 1")
    doc = dict(good, facts=[["k" * 40, 1]])
    _bad(doc, "facts:", "limit is 32")
    doc = dict(good, routines={"r": [{"tool": "gpio_write", "args": {"pin": "garage", "value": 1}}]})
    _bad(doc, "routines:", "'garage'")
    doc = dict(good, jobs=[{"spec": "at noon", "action": {"routine": "night"}}])
    _bad(doc, "jobs:", "job 1")
    doc = dict(good, tz="Mars/Olympus")
    _bad(doc, "tz")


def test_a_job_whose_routine_was_deleted_still_restores():
    # the scheduler keeps a job whose routine is gone (the run logs it): its backup must restore
    dev = _populate()
    dev.routines.delete("night")
    doc = json.loads(json.dumps(backup.export(dev)))
    _wipe()
    dev = _device()
    eq(backup.restore(dev, doc), "ok: restored 0 routines, tz CET-1CEST,M3.5.0,M10.5.0/3, 2 jobs, 2 facts")
    eq(sorted(j["name"] for j in _device().sched.jobs()), ["lights_out", "plants"])


def test_a_part_that_fails_to_apply_is_rolled_back():
    good = backup.export(_populate())
    # passes the checks, but the scheduler refuses a date in the past only when adding
    doc = dict(good, facts=[["new", 1]],
               routines={"other": [{"tool": "gpio_write", "args": {"pin": "fan", "value": 1}}]},
               jobs=[{"name": "late", "spec": "at 2025-01-01T00:00", "action": {"routine": "other"}}])
    _bad(doc, "restore failed, nothing changed", "job 'late'", "in the past")


def test_sections_left_out_are_left_alone():
    dev = _populate()
    eq(backup.restore(dev, {"v": 1, "facts": [["only", "this"]]}), "ok: restored 1 facts")
    eq(dev.memory.items(), [("only", "this")])
    eq((dev.routines.list(), len(dev.sched.jobs())), (["night"], 2))


def test_a_device_without_a_scheduler_exports_no_jobs_and_refuses_some():
    _wipe()
    dev = make_device()
    dev.memory = Memory()
    dev.routines = Routines(dev)
    doc = backup.export(dev)
    eq((doc["jobs"], doc["facts"], doc["routines"]), ([], [], {}))
    try:
        backup.restore(dev, dict(doc, jobs=[{"spec": "every 1h", "action": {"prompt": "hi"}}]))
    except ValueError as e:
        if "no scheduler" not in str(e):
            raise
    else:
        raise Exception("jobs restored without a scheduler")
