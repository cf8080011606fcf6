"""Device footprint: .mpy bytes of the firmware, and the smallest MicroPython heap in which a
full agent session (LLM turn with tool calls, fast path, direct commands over every feature)
works every run: on the 32-bit build that models the ESP32 (bench/esp32_heap.py) from .mpy files,
with TLS, from ROMFS, and frozen into the firmware (bench/frozen32.py, when MicroPython's sources
are given); and on the venv's 64-bit unix port for comparison. Writes
docs/benchmarks.md. Goals (32-bit): .mpy total <= 64 KB; the session with TLS in 96 KB from .mpy
files, in 64 KB from ROMFS or frozen. `make heap` (bench/heap_ratchet.py) keeps the figures from
growing."""
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from tools.fwsize import mpy_total  # noqa: E402
from tools.image import stage_firmware  # noqa: E402
from tools.paths import FIRMWARE  # noqa: E402
from tools.romfs import build_image  # noqa: E402

GOAL_MPY_BYTES = 64 * 1024
RUNS, RUNS_64 = 10, 3  # a heap "works" when every one of this many fresh devices finishes the session
HEAP_LOW, HEAP_HIGH = 16 * 1024, 256 * 1024
STEP_TIMEOUT_S = 10.0
BROKER_DOWN_S = 1.0           # the broker restarted after the session: every device reconnects
RECONNECT_TIMEOUT_S = 45.0    # backoff, or three failed TLS handshakes, a reset and a boot, then the answer
# After the broker restart: the porch light the session left on is still on (a board that reset
# for memory sets its outputs back, wisp/pins.py keep_levels), and an ask works (fast path: the
# link, not the LLM, is under test).
RECONNECT_READ = {"tool": "gpio_read", "args": {"pin": "porch_light"}}
RECONNECT_ASK = {"text": "turn off the porch light"}

# What a session does, as (topic suffix, payload); every one must answer ok.
SESSION = [
    ("ask", {"text": "it is getting dark, light up the porch please"}),   # LLM: tool call, then words
    ("ask", {"text": "turn off the porch light"}),                        # fast path
    ("cmd", {"tool": "gpio_read", "args": {"pin": "door"}}),
    ("cmd", {"tool": "memory_set", "args": {"key": "owner", "value": "Ada"}}),
    ("cmd", {"tool": "routine_define", "args": {"name": "night", "steps": [
        {"tool": "gpio_read", "args": {"pin": "door"}, "as": "door"},
        {"tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}, "if": ["door", "==", 1]}]}}),
    ("cmd", {"tool": "routine_run", "args": {"name": "night"}}),
    ("cmd", {"tool": "schedule_add", "args": {"spec": "30 22 * * *", "routine": "night", "name": "nightly"}}),
    ("cmd", {"tool": "system_info", "args": {}}),
    ("ask", {"text": "it is getting dark, light up the porch please"}),
]


def compile_firmware(out_dir):
    """The board's flash root as `wisp image` lays it out (tools/image.py stage_firmware: .mpy files
    without line numbers, boot.py and main.py as source), bytecode-only so the unix port loads it."""
    stage_firmware(out_dir, march=None, simulator=True)


def session_works(stack, heap, load, dev_id, resets=None):
    """Run SESSION on a fresh device with this heap, then restart the broker, read the porch light
    (still on) and ask once more (a TLS reconnect needs the handshake's heap again, in the heap the
    session left); True when every step answered ok. load: start_device keywords saying where the
    code comes from (.mpy files or ROMFS). A board reset on the way (the simulator exits with code
    3) is a reboot: the device is started again and the session goes on; `resets`, a list, gets one entry per reset."""
    try:
        proc = stack.start_device(dev_id, heapsize=heap, **load)
    except (TimeoutError, RuntimeError):
        return False
    try:
        for suffix, body in SESSION:
            got = _answer(stack, proc, dev_id, suffix, body, STEP_TIMEOUT_S)
            if got is None or not got.get("ok"):
                print(f"  heap {heap // 1024}K: {suffix} {json.dumps(body)[:60]} -> {got}", flush=True)
                return False
        stack.restart_broker(BROKER_DOWN_S)
        deadline = time.monotonic() + RECONNECT_TIMEOUT_S
        while time.monotonic() < deadline:  # asks sent while the device is offline are lost: ask again
            if proc.poll() == 3:  # the board reset itself (wisp/mqtt.py on_starved): it boots again
                if resets is not None:
                    resets.append(dev_id)
                try:
                    proc = stack.start_device(dev_id, heapsize=heap, **load)
                except (TimeoutError, RuntimeError):
                    return False
            got = _answer(stack, proc, dev_id, "cmd", RECONNECT_READ, 3.0)
            if got is not None:
                if got.get("result") != "porch_light=1":
                    print(f"  heap {heap // 1024}K: porch light after the broker restart -> {got}", flush=True)
                    return False
                got = _answer(stack, proc, dev_id, "ask", RECONNECT_ASK, STEP_TIMEOUT_S)
                if got is None or not got.get("ok"):
                    print(f"  heap {heap // 1024}K: ask after the broker restart -> {got}", flush=True)
                    return False
                if "discovery failed again" in stack.console(dev_id):  # Home Assistant left without entities
                    print(f"  heap {heap // 1024}K: Home Assistant discovery failed twice", flush=True)
                    return False
                return proc.poll() is None
            if proc.poll() not in (None, 3):
                return False
        print(f"  heap {heap // 1024}K: no answer within {RECONNECT_TIMEOUT_S:.0f} s of the broker restart", flush=True)
        return False
    finally:
        proc.kill()
        proc.wait()


def _resets_at(session, interpreter, heap):
    """(how many of RUNS more runs in `heap` came back only by resetting the board, the smallest heap
    in which every run comes back without a reset)."""
    before = len(session.resets)
    ok = session.successes(interpreter, heap, RUNS)
    reset_runs = len(set(session.resets[before:]))
    session.no_reset = True
    try:
        calm = heap if ok == RUNS and not reset_runs else session.smallest(interpreter, heap, HEAP_HIGH, RUNS)
    finally:
        session.no_reset = False
    return reset_runs, calm


def _answer(stack, proc, dev_id, suffix, body, timeout_s):
    """Send one ask or command; its answer, or None when none came (or the device stopped)."""
    req_id = secrets.token_hex(4)
    stack.probe.publish(f"wisp/{dev_id}/{suffix}", dict(body, v=1, id=req_id))
    answer_topic = f"wisp/{dev_id}/{'reply' if suffix == 'ask' else 'cmd/res'}"
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            return stack.probe.wait_for(answer_topic, lambda r, i=req_id: r.get("id") == i, timeout=0.5)
        except TimeoutError:
            continue
    return None


def main():
    from bench import frozen32
    from bench.esp32_heap import MP32, MP32_TLS, Session, builds_dir
    tmp = tempfile.TemporaryDirectory(prefix="wisp-footprint-")
    romfs_bytes = build_image(Path(tmp.name) / "wisp.romfs")
    xtensa_bytes = mpy_total()  # what `make size` counts
    source_bytes = sum(p.stat().st_size for p in (FIRMWARE / "wisp").rglob("*.py"))
    where = builds_dir()
    no_frozen = frozen32.missing() if where else "no 32-bit builds"
    frozen = frozen32.build(Path(tmp.name) / "frozen", where) if not no_frozen else {}
    # (row, Session keywords, 32-bit interpreter, goal in KB on the 32-bit model)
    rows = [(".mpy files on the filesystem", {}, where and where / MP32, None),
            (".mpy files, TLS to the broker (mbedTLS buffers in the same heap)", {"tls": True},
             where and where / MP32_TLS, 96),
            ("ROMFS image run in place", {"romfs": True}, where and where / MP32, None),
            ("ROMFS image, TLS to the broker", {"romfs": True, "tls": True}, where and where / MP32_TLS, 64),
            ("frozen into the firmware", {"frozen": True}, frozen.get("plain"), None),
            ("frozen, TLS to the broker", {"frozen": True, "tls": True}, frozen.get("tls"), 64)]
    table = []
    for label, kw, build, goal in rows:
        session = Session(**kw)
        try:
            bits32 = session.smallest(build, HEAP_LOW, HEAP_HIGH, RUNS) if build else None
            reset_runs, calm = _resets_at(session, build, bits32) if bits32 else (None, None)
            at_goal = session.successes(build, goal * 1024, RUNS) if build and goal else None
            # the 64-bit port from PyPI has nothing frozen in: no comparison there
            bits64 = session.smallest(None, HEAP_LOW, HEAP_HIGH, RUNS_64) if not (kw.get("tls") or
                                                                                 kw.get("frozen")) else None
        finally:
            session.close()
        table.append((label, bits32, reset_runs, calm, at_goal, goal, bits64))
        print(label, bits32, reset_runs, calm, at_goal, bits64, flush=True)
    tmp.cleanup()

    def kb(v):
        return "%d KB" % (v // 1024) if v else "-"
    lines = ["## Device footprint",
             "",
             "The smallest `-X heapsize` (4 KB steps) in which a full agent session works every run: an LLM ask "
             "with a tool call, a fast-path ask, direct commands for GPIO, memory, routine define and run, "
             "schedule and system info, then the broker restarted and one more ask once the device is back (a "
             "device that resets itself to reconnect is started again, as a board boots), against real "
             "mosquitto, the bridge and the fake tier. First column: the "
             "32-bit MicroPython v1.26.1 build that models the ESP32 (4-byte words, 16-byte GC blocks; with TLS, "
             "the build whose mbedTLS allocates from the Python heap, RSA-2048 broker certificate), %d of %d runs. "
             "Second column: the 64-bit unix port, %d of %d runs, for comparison only (objects are larger there, "
             "but not twice: bytecode copied from .mpy files does not grow)." % (RUNS, RUNS, RUNS_64, RUNS_64),
             "",
             "Resets: of %d more runs in that smallest heap, how many came back after the broker restart only "
             "by resetting the board (reconnects failing for memory, wisp/mqtt.py): a reboot, which brings the "
             "outputs back at their levels (the bench checks the porch light is still on) but drops the link and "
             "a relay for a few seconds. Without a reset: the smallest heap in which every run reconnects "
             "without one." % RUNS,
             "",
             "| loading | 32-bit (ESP32 model) | resets | without a reset | goal (32-bit) | 64-bit unix port |",
             "|---|---|---|---|---|---|"]
    for label, bits32, reset_runs, calm, at_goal, goal, bits64 in table:
        goal_text = "%d KB: works %d of %d runs" % (goal, at_goal, RUNS) if at_goal is not None else "-"
        reset_text = "%d of %d" % (reset_runs, RUNS) if reset_runs is not None else "-"
        lines.append(f"| {label} | {kb(bits32)} | {reset_text} | {kb(calm)} | {goal_text} | {kb(bits64)} |")
    lines += ["",
              "| size | value | goal |",
              "|---|---|---|",
              f"| firmware source (wisp/**/*.py) | {source_bytes / 1024:.1f} KB | |",
              f"| .mpy total for ESP32 (-march=xtensawin) | {xtensa_bytes / 1024:.1f} KB "
              f"| <= {GOAL_MPY_BYTES // 1024} KB |",
              f"| ROMFS image of the wisp package | {romfs_bytes / 1024:.1f} KB | |"]
    if not where:
        lines += ["", "The 32-bit builds were not found (bench/esp32_heap.py): no ESP32-model figures."]
    elif no_frozen:
        lines += ["", "Frozen rows not measured: " + no_frozen + " (bench/frozen32.py)."]
    else:
        lines += ["", "Frozen rows: the same 32-bit builds made again from MicroPython v1.26.1's sources with the "
                  "wisp package and wispboot frozen in (bench/frozen32.py, tools/frozen_wisp.py), as a custom "
                  "ESP32 firmware built with tools/frozen_manifest.py holds them; the flash root has main.py only."]
    report = "\n".join(lines)
    print(report)
    write_section("device_footprint", report)


if __name__ == "__main__":
    main()
