"""Over-the-air updates: time to update one device and N simulated devices at once over loopback
(real mosquitto, the firmware on the MicroPython unix port loading .mpy as a board does, the real
`wisp ota` server), the smallest heap in which a device still completes an update against the one it
needs idle, and ask latency (fast path, answered on the device) during an update against idle.
Writes its section of docs/benchmarks.md.

    python bench/ota.py [--devices 8] [--runs 3]
"""
import argparse
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import percentile, write_section  # noqa: E402
from tests.e2e.otaboard import Board  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tools import ota, otabundle  # noqa: E402
from tools.image import stage_firmware  # noqa: E402

ONLINE_S = 30
HEAP_LOW, HEAP_HIGH, HEAP_STEP = 32 * 1024, 256 * 1024, 4 * 1024
ASK_TIMEOUT_S = 10


def online(stack, dev_id, fw=None, timeout=ONLINE_S):
    stack.probe.wait_for(f"wisp/{dev_id}/status", lambda s: isinstance(s, dict) and s.get("state") == "online"
                         and (fw is None or s.get("fw") == fw), timeout=timeout)


def board(stack, dev_id, firmware, heapsize=None, micropython=None):
    key = secrets.token_hex(32)
    return Board(stack, dev_id, key, heapsize=heapsize, firmware_dir=firmware, micropython=micropython), \
        bytes.fromhex(key)


def one_device(stack, firmware, runs):
    b, key = board(stack, "one", firmware)
    out = []
    try:
        online(stack, "one")
        for n in range(runs):
            bundle = otabundle.build(f"0.1.{n + 1}")
            server = ota.Server(stack.broker.host, stack.broker.port, bundle)
            try:
                r = server.update("one", key)
            finally:
                server.close()
            if not r.ok:
                raise RuntimeError(f"update failed: {r.text}")
            out.append((r.seconds, bundle.size, r.chunks))
            print(f"  one device, run {n + 1}: {r.seconds:.2f} s, {bundle.size} bytes, {r.chunks} chunks", flush=True)
    finally:
        b.stop()
    return out


def fleet(stack, firmware, count):
    ids = [f"f{i}" for i in range(count)]
    boards = {}
    try:
        for dev_id in ids:
            boards[dev_id] = board(stack, dev_id, firmware)
        for dev_id in ids:
            online(stack, dev_id)
        bundle = otabundle.build("0.1.1")
        server = ota.Server(stack.broker.host, stack.broker.port, bundle)
        t0 = time.monotonic()
        try:
            results, halted = ota.rollout(server, {d: boards[d][1] for d in ids}, [ids])
        finally:
            server.close()
        wall = time.monotonic() - t0
    finally:
        for b, _key in boards.values():
            b.stop()
    if halted or not all(r.ok for r in results):
        raise RuntimeError("fleet update failed: " + "; ".join(r.text for r in results if not r.ok))
    return wall, [r.seconds for r in results], bundle.size


def update_works(stack, firmware, heap, tag, update, micropython=None):
    """A fresh device with this heap comes online, (with update) completes one, and answers an ask."""
    b, key = board(stack, tag, firmware, heapsize=heap, micropython=micropython)
    try:
        online(stack, tag, timeout=10)
        if update:
            server = ota.Server(stack.broker.host, stack.broker.port, otabundle.build("0.1.1"))
            try:
                r = server.update(tag, key, timeout_s=60)
            finally:
                server.close()
            if not r.ok:
                return False
        return ask(stack, tag, "turn on the porch light") is not None
    except TimeoutError:
        return False
    finally:
        b.stop()


def smallest_heap(stack, firmware, update, micropython=None):
    lo, hi, n = HEAP_LOW, HEAP_HIGH, 0
    tag = f"h{int(update)}{'w' if micropython else ''}"
    if not update_works(stack, firmware, hi, f"{tag}top", update, micropython):
        return None
    while hi - lo > HEAP_STEP:
        mid = (lo + hi) // 2 // HEAP_STEP * HEAP_STEP
        n += 1
        ok = update_works(stack, firmware, mid, f"{tag}x{n}", update, micropython)
        print(f"  {'update' if update else 'idle'} heap {mid // 1024}K: {'works' if ok else 'fails'}", flush=True)
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def ask(stack, dev_id, text):
    """Seconds until the reply to one ask, or None."""
    ask_id = secrets.token_hex(4)
    t0 = time.monotonic()
    stack.probe.publish(f"wisp/{dev_id}/ask", {"v": 1, "id": ask_id, "text": text})
    try:
        reply = stack.probe.wait_for(f"wisp/{dev_id}/reply", lambda r, i=ask_id: r.get("id") == i,
                                     timeout=ASK_TIMEOUT_S)
    except TimeoutError:
        return None
    return time.monotonic() - t0 if reply.get("ok") else None


def latency(stack, firmware, idle_asks):
    b, key = board(stack, "lat", firmware)
    texts = ["turn on the porch light", "turn off the porch light"]
    try:
        online(stack, "lat")
        idle = [ask(stack, "lat", texts[i % 2]) for i in range(idle_asks)]
        server = ota.Server(stack.broker.host, stack.broker.port, otabundle.build("0.1.1"))
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", server.update("lat", key)))
        t.start()
        while server.served.get("lat", 0) < 3:
            time.sleep(0.005)
        during, n = [], 0
        # only asks answered while chunks still flow count: the transfer, not the reboot after it
        while t.is_alive() and server.served["lat"] < otabundle_chunks(server.bundle) - 2:
            before = server.served["lat"]
            took = ask(stack, "lat", texts[n % 2])
            n += 1
            if took is not None and server.served["lat"] > before:
                during.append(took)
        t.join(120)
        server.close()
        if not out["r"].ok:
            raise RuntimeError(out["r"].text)
    finally:
        b.stop()
    return [x for x in idle if x is not None], during, idle.count(None)


def otabundle_chunks(bundle):
    return bundle.size // 1024 + len(bundle.files) + 1


def kb(v):
    return f"{v // 1024} KB" if v else "?"


def ms(v):
    return f"{v * 1000:.1f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=8, help="simulated devices updated at once (default 8)")
    ap.add_argument("--runs", type=int, default=3, help="updates of the single device (default 3)")
    ap.add_argument("--asks", type=int, default=40, help="idle asks for the latency baseline (default 40)")
    ap.add_argument("--micropython32", help="a 32-bit MicroPython unix build: the heap rows again on it, closer "
                                            "to an ESP32 (see docs/architecture.md, Heap budget)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wisp-bench-ota-") as tmp:
        firmware = Path(tmp) / "fw"
        stage_firmware(firmware, simulator=True)  # .mpy, as `wisp image` puts them on a board
        stack = Stack(with_tier=False)
        try:
            print("one device:", flush=True)
            single = one_device(stack, firmware, args.runs)
            print(f"{args.devices} devices at once:", flush=True)
            wall, each, size = fleet(stack, firmware, args.devices)
            print("ask latency, idle and during an update:", flush=True)
            idle, during, lost = latency(stack, firmware, args.asks)
            print("smallest heap:", flush=True)
            heap_idle = smallest_heap(stack, firmware, update=False)
            heap_update = smallest_heap(stack, firmware, update=True)
            heap32 = None
            if args.micropython32:
                print("smallest heap, 32-bit build:", flush=True)
                heap32 = (smallest_heap(stack, firmware, False, args.micropython32),
                          smallest_heap(stack, firmware, True, args.micropython32))
        finally:
            stack.close()
    secs = [s for s, _b, _c in single]
    med = percentile(secs, 50)
    lines = [
        "## Over-the-air updates",
        "",
        "`python bench/ota.py` (bench/ota.py): real mosquitto on loopback, devices are the firmware on the "
        "MicroPython unix port (64-bit) loading `.mpy` files as a board does, the host side is `wisp ota`'s "
        "server. An update is timed from the offer to the device's confirmation after its reboot "
        f"(health gate passed). Bundle: {single[0][1] / 1024:.1f} KB, {single[0][2]} chunks of at most 1 KB. "
        f"One run on a shared 2-core machine; N = {args.devices} devices, each its own MicroPython process.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| one device, offer to confirmed (median of {len(secs)}) | {med:.2f} s ({single[0][1] / 1024 / med:.0f} KB/s "
        f"incl. verify and reboot) |",
        f"| {args.devices} devices at once, wall time | {wall:.2f} s ({args.devices * size / 1024 / wall:.0f} KB/s "
        f"in all) |",
        f"| {args.devices} devices at once, per device p50 / max | {percentile(each, 50):.2f} s / {max(each):.2f} s |",
        f"| ask latency idle, p50 / p99 ({len(idle)} fast-path asks) | {ms(percentile(idle, 50))} / "
        f"{ms(percentile(idle, 99))} |",
        f"| ask latency during an update, p50 / p99 ({len(during)} asks) | {ms(percentile(during, 50))} / "
        f"{ms(percentile(during, 99))} (ratio p50 {percentile(during, 50) / percentile(idle, 50):.1f}x) |",
        f"| smallest heap (64-bit): boots, connects, answers an ask | {kb(heap_idle)} |",
        f"| smallest heap (64-bit): also completes an update and answers after it | {kb(heap_update)} |",
        *([f"| smallest heap (32-bit build): idle / with an update | {kb(heap32[0])} / {kb(heap32[1])} |"]
          if heap32 else []),
        "",
        "Heaps are found by bisection in 4 KB steps with `-X heapsize=`, on the 64-bit unix port and, with "
        "`--micropython32`, on a 32-bit build of the same port (4-byte words and 16-byte GC blocks as on an "
        "ESP32; TLS not counted: the link here is plain MQTT); the difference between the two rows is what "
        "an update costs on top of a running agent: one 1 KB chunk, the hash state, the job, and the code "
        "of wisp/ota.py, loaded only while an update runs.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("ota", text)


if __name__ == "__main__":
    main()
