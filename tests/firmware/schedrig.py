# The scheduler's test rig (wisp/sched.py on a fake clock), shared by mp_test_sched.py and
# mp_test_sched_tools.py.
import asyncio
import os

from fakeboard import make_device

from wisp import civil
from wisp.sched import Scheduler

T0 = civil.seconds(2026, 6, 1, 12, 0)  # Monday 2026-06-01 12:00 UTC
CET = "CET-1CEST,M3.5.0,M10.5.0/3"
ROUTINE = {"routine": "lights_on"}


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


class Rig:
    """A scheduler on a fake clock that records what it fires and logs."""
    def __init__(self, name, clock, dev=None, fail=()):
        self.fired, self.logs, self.clock = [], [], clock
        self.dev = dev or make_device()

        async def fire(job):
            self.fired.append(job)
            if job["name"] in fail:
                raise Exception("kaboom")
        self.s = Scheduler(self.dev, fire, now=clock, store_path=name + ".json", log=self.logs.append)

    def names(self):
        return [j["name"] for j in self.fired]

    def logged(self, fragment):
        return any(fragment in line for line in self.logs)

    async def run_at(self, *times):
        """Run the runner while the clock is set to each time in turn."""
        task = asyncio.create_task(self.s.run())
        await asyncio.sleep_ms(2)
        for t in times:
            self.clock.t = t
            self.s.wake()
            await asyncio.sleep_ms(2)
        task.cancel()
        await asyncio.sleep_ms(0)
