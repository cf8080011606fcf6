"""A device left running at the heap limits: one device on the 32-bit ESP32 model, at the limits
`make heap` keeps (pyproject.toml [tool.wisp]), answers the full sequence of requests
(bench/device_footprint.py SESSION) over and over without a reboot, with the broker restarted every few
cycles. `make heap` starts a fresh device for each sequence; a board runs for weeks, so what one
sequence leaves behind (heap in use, holes a later TLS handshake cannot use) adds up here, or does not.
Writes docs/benchmarks.md.

    python bench/heap_days.py [--cycles 60] [--restart-every 5]
"""
import argparse
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.device_footprint import RECONNECT_READ, SESSION, STEP_TIMEOUT_S, _answer  # noqa: E402
from bench.esp32_heap import MP32, MP32_TLS, Session, builds_dir  # noqa: E402
from bench.heap_ratchet import limits  # noqa: E402
from bench.report import write_section  # noqa: E402

DEV = "days1"
BACK_TIMEOUT_S = 60.0  # after a broker restart: backoff, maybe a reset and a boot, then the answer
# the session's schedule_add would find its job from the cycle before: remove it first, as a user would
AGAIN = ("cmd", {"tool": "schedule_remove", "args": {"name": "nightly"}})
# every cycle makes two LLM rounds: the default budget (120 an hour) would refuse them after an hour's worth
BUDGET = {"llm_per_hour": 100000, "llm_per_day": 1000000}


class LongDevice:
    """One device started once (and again only when it resets itself, as a board reboots)."""

    def __init__(self, session, interpreter, heap):
        from tools import sim
        self.s, self.heap, self.resets = session, heap, 0
        if session.tls:
            d = session.stack.dir / "devices" / DEV
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(session.ca["ca"], d / "ca.pem")
        self._real, sim.start_device = sim.start_device, session._starter(interpreter, heap)
        self.load = {"firmware_dir": session.fw, "extra": dict(session.extra or {}, **BUDGET)}
        self.proc = session.stack.start_device(DEV, heapsize=heap, **self.load)

    def ask(self, suffix, body, timeout_s=STEP_TIMEOUT_S):
        if self.proc.poll() == 3:  # the board reset itself (wisp/mqtt.py on_starved): it boots again
            self.resets += 1
            self.proc = self.s.stack.start_device(DEV, heapsize=self.heap, **self.load)
        return _answer(self.s.stack, self.proc, DEV, suffix, body, timeout_s)

    def back_after_restart(self):
        """Restart the broker; True once the device answers again."""
        self.s.stack.restart_broker(1.0)
        deadline = time.monotonic() + BACK_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.ask("cmd", RECONNECT_READ, 3.0) is not None:
                return True
            if self.proc.poll() not in (None, 3):
                return False
        return False

    def close(self):
        from tools import sim
        sim.start_device = self._real
        self.proc.kill()
        self.proc.wait()


def run_case(tls, heap, cycles, restart_every):
    """(failed steps, cycles, broker restarts, resets, heap free after each cycle's system_info)."""
    session = Session(tls=tls)
    dev = None
    try:
        dev = LongDevice(session, builds_dir() / (MP32_TLS if tls else MP32), heap)
        failed, restarts, free = 0, 0, []
        for c in range(cycles):
            steps = list(SESSION)
            if c:
                steps.insert(next(i for i, (_s, b) in enumerate(steps) if b.get("tool") == "schedule_add"), AGAIN)
            for suffix, body in steps:
                got = dev.ask(suffix, body)
                if got is None or not got.get("ok"):
                    failed += 1
                    print(f"  cycle {c}: {suffix} {str(body)[:50]} -> {str(got)[:120]}", flush=True)
                elif body.get("tool") == "system_info":
                    free.append(int(re.search(r"heap (\d+) B free", got["result"]).group(1)))
            if restart_every and c % restart_every == restart_every - 1:
                restarts += 1
                if not dev.back_after_restart():
                    failed += 1
                    print(f"  cycle {c}: no answer within {BACK_TIMEOUT_S:.0f} s of the broker restart", flush=True)
        return failed, cycles, restarts, dev.resets, free
    finally:
        if dev:
            dev.close()
        session.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--restart-every", type=int, default=5, help="cycles between broker restarts (0: none)")
    args = ap.parse_args()
    if builds_dir() is None:
        print("heap_days: the 32-bit MicroPython builds are not here (bench/esp32_heap.py); nothing measured")
        return 0
    kept = limits()
    rows = []
    for what, tls, key in ((".mpy files", False, "heap-limit-bytes"),
                           (".mpy files, TLS to the broker", True, "heap-tls-limit-bytes")):
        heap = kept[key]
        failed, cycles, restarts, resets, free = run_case(tls, heap, args.cycles, args.restart_every)
        tenth = max(1, len(free) // 10)
        first, last = sum(free[:tenth]) / tenth, sum(free[-tenth:]) / tenth
        rows.append(f"| {what} | {heap // 1024} KB | {cycles} | {failed} | {restarts} | {resets} | "
                    f"{first / 1024:.1f} | {last / 1024:.1f} |")
        print(rows[-1], flush=True)
    write_section("heap_days", "\n".join([
        "## A device left running at the heap limits",
        "",
        f"One device on the 32-bit ESP32 model (bench/esp32_heap.py), at the heaps `make heap` keeps, answers "
        f"the full sequence of requests {args.cycles} times in a row without a reboot (`schedule_remove` "
        f"before each `schedule_add` after the first); the broker is restarted after every "
        f"{args.restart_every} sequences. Failed: steps that did not answer ok, or no answer within "
        f"{BACK_TIMEOUT_S:.0f} s of a broker restart. Resets: the device reset itself to reconnect (a reboot "
        f"on a board). Free heap: `system_info` in each sequence, mean of the first and last tenth. One run.",
        "",
        "| loading | heap | sequences | failed | broker restarts | resets | free KB, first tenth | last tenth |",
        "|---|---|---|---|---|---|---|---|",
        *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
