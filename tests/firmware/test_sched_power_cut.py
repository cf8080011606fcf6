"""Power cuts while the scheduler saves jobs: SIGKILL the real MicroPython unix port at random
moments while it adds and removes jobs, many times over, and check that jobs.json always loads
(in CPython and in a fresh MicroPython Scheduler) with a job list the writer really had."""
import json
import random
import time

from tests.firmware.powercut import Writer

CUTS = 25
WINDOW = 12             # w<n> jobs kept; + "anchor" + up to 2 not yet removed stays under MAX_JOBS (16)
MAX_CUT_DELAY_S = 0.04
START_TIMEOUT_S = 10

# Keeps a sliding window of jobs w<n-WINDOW+1>..w<n> plus "anchor": each step adds w<n> (one save)
# then removes the jobs that fell out of the window (a save each), then prints "OK n". At start it prints what a fresh
# Scheduler loaded and carries on after the newest job.
WRITER = r"""
import json
from wisp.sched import Scheduler

class Dev:
    config = {}

async def fire(job):
    pass

s = Scheduler(Dev(), fire, store_path="jobs.json", log=lambda line: print("LOG", line))
names = [j["name"] for j in s.jobs()]
print("STATE", json.dumps(sorted(names)))
if "anchor" not in names:
    s.add("0 7 * * *", {"routine": "anchor"}, name="anchor")
n = max([int(x[1:]) for x in names if x[0] == "w"] or [-1]) + 1
while True:
    s.add("every %dm" % (n % 50 + 1), {"prompt": "%d:" % n + "x" * (n * 37 % 150)}, name="w%d" % n)
    # a cut between add and remove leaves one more old job: drop it too, oldest first (jobs() is in
    # next-run order: w50, every 1m, went before w48 and w49, and a cut then left a hole)
    for k in sorted(int(j["name"][1:]) for j in s.jobs() if j["name"][0] == "w"):
        if k <= n - WINDOW:
            s.remove("w%d" % k)
    print("OK", n)
    n += 1
""".replace("WINDOW", str(WINDOW))


def check_file(path, confirmed, writers):
    """jobs.json must hold a state the writer had: anchor + a contiguous window ending at the
    last confirmed job or the one after it, every job intact. Returns (sorted names, newest job).
    Each writer adds before it trims, so every writer cut between the two may leave one more
    old job: the window may exceed WINDOW by up to one per writer so far."""
    doc = json.loads(path.read_text())
    assert doc["v"] == 1 and isinstance(doc["jobs"], list), doc
    jobs = {j["name"]: j for j in doc["jobs"]}
    assert len(jobs) == len(doc["jobs"]), "duplicate names"
    if "anchor" not in jobs:  # cut before the first save finished
        assert confirmed < 0 and not jobs, jobs
        return [], -1
    w = sorted(int(name[1:]) for name in jobs if name != "anchor")
    if not w:
        assert confirmed < 0, "no jobs after job %d was confirmed" % confirmed
        return ["anchor"], -1
    lo, hi = w[0], w[-1]
    assert w == list(range(lo, hi + 1)), "window has holes: %r" % w
    assert confirmed <= hi <= confirmed + 1, "file holds job %d, last confirmed %d" % (hi, confirmed)
    assert (lo == 0 or hi - lo + 1 >= WINDOW) and hi - lo + 1 <= WINDOW + 1 + writers, "window %d..%d" % (lo, hi)
    for n in w:
        job = jobs["w%d" % n]
        assert job["spec"] == "every %dm" % (n % 50 + 1), job
        assert job["action"] == {"prompt": "%d:" % n + "x" * (n * 37 % 150)}, job
        assert job["missed"] == "skip" and isinstance(job["next"], int), job
    return sorted(jobs), hi


def _complete(tmp):
    try:
        json.loads(tmp.read_text())
        return tmp
    except (OSError, ValueError):
        return None


def test_jobs_file_survives_repeated_power_cuts(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    flash = tmp_path / "flash"
    flash.mkdir()
    rng = random.Random(4321)
    confirmed, mid_write, t0 = -1, 0, time.monotonic()
    on_disk = []
    for cut in range(CUTS):
        w = Writer(flash, script)
        assert w.started.wait(START_TIMEOUT_S), "writer did not start"
        assert w.state() == on_disk, "MicroPython loaded %r, the file holds %r" % (w.state(), on_disk)
        time.sleep(rng.uniform(0, MAX_CUT_DELAY_S))
        w.kill()
        assert not [ln for ln in w.lines if ln.startswith("LOG") and "recovered from an interrupted save" not in ln], \
            w.lines[:5]
        if w.confirmed() is not None:
            confirmed = w.confirmed()
        if (flash / "jobs.tmp").exists():
            mid_write += 1  # this cut landed inside a save
        assert not (flash / "jobs.bad").exists(), "the jobs file was found corrupt"
        # The first save has no jobs.json to fall back on: a cut after its .tmp was complete but
        # before the rename leaves only the .tmp, which the next load recovers (wisp/store.py).
        saved = flash / "jobs.json" if (flash / "jobs.json").exists() else _complete(flash / "jobs.tmp")
        if saved:
            on_disk, newest = check_file(saved, confirmed, cut + 1)
            confirmed = max(confirmed, newest)  # the next writer carries on after the newest saved job
    final = Writer(flash, script)  # one more fresh interpreter reads the last state
    assert final.started.wait(START_TIMEOUT_S)
    assert final.state() == on_disk
    final.kill()
    print("power cuts: %d, %d inside a save, %d jobs written, %.1f s" % (CUTS, mid_write, confirmed + 1,
                                                                         time.monotonic() - t0))
    assert confirmed > CUTS // 2, "too few writes to mean anything: %d" % confirmed
    assert mid_write > 0, "no cut landed inside a save; the test proves nothing"
