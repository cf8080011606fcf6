"""The ESP32 heap model: the full agent session (bench/device_footprint.py SESSION) run by a 32-bit
MicroPython build (4-byte words, 16-byte GC blocks, 31-bit small ints, as on the ESP32) from .mpy
files, against real mosquitto, the bridge and the fake tier; with TLS, by the build whose mbedTLS
allocates from the MicroPython heap, so -X heapsize bounds Python objects and TLS buffers together.

The builds are not part of this repository: they are looked for in $WISP_MP32_DIR, else in a
`shared/micropython` directory beside the checkout or above it (see docs/benchmarks.md).
"""
import os
import shutil
import tempfile
from pathlib import Path

from tools.paths import FIRMWARE, REPO

MP32 = "micropython-1.26.1-unix-32bit"
MP32_TLS = "micropython-1.26.1-unix-32bit-tls-in-heap"


def builds_dir():
    """The directory holding the 32-bit builds, or None when they are absent."""
    given = os.environ.get("WISP_MP32_DIR")
    candidates = [Path(given)] if given else [p / "shared" / "micropython" for p in REPO.parents]
    for d in candidates:
        if (d / MP32).is_file() and (d / MP32_TLS).is_file():
            return d
    return None


def flash_root(fw, workdir):
    """Copy the compiled firmware into the device's directory, where a board keeps it: the flash
    root. Each module's file name is interned for good when it loads (its __file__); on a board
    that is `wisp/agent.mpy`, so the model must not load it from a long temporary path (44 modules
    at ~50 characters more each would count ~2 KB of heap no board spends). Run `-m main` in
    `workdir` with MICROPYPATH=".frozen": sys.path[0] stays '', as on a board."""
    for item in fw.iterdir():
        dest = Path(workdir) / item.name
        if item.is_dir():
            shutil.copytree(item, dest, dirs_exist_ok=True)
        else:
            shutil.copy(item, dest)


class Session:
    """A stack (broker, bridge, fake tier) and the compiled firmware, to run sessions in.
    tls: the device talks to the broker over TLS with a pinned CA (RSA-2048, as most brokers).
    frozen: the interpreter given to works() has the firmware frozen in (bench/frozen32.py): the
    device's flash root holds main.py only, as a frozen board's does."""

    def __init__(self, tls=False, romfs=False, frozen=False):
        from bench.device_footprint import compile_firmware
        from tests.e2e.stack import Stack
        from tests.tlsutil import make_ca, tls_listener_conf
        from tools import broker as brokers
        self.tmp = tempfile.TemporaryDirectory(prefix="wisp-esp32heap-")
        # frozen: the interpreter holds the package, and the flash root only main.py, which stays source
        self.fw = FIRMWARE if frozen else Path(self.tmp.name) / "mpy"
        if not frozen:
            compile_firmware(self.fw)
        self.romfs = None
        if romfs:
            from tools.romfs import build_image
            self.romfs = Path(self.tmp.name) / "wisp.romfs"
            build_image(self.romfs)
        self.extra = None
        conf = ""
        if tls:
            self.ca = make_ca(Path(self.tmp.name) / "ca")
            self.tls_port = brokers.free_port()
            conf = tls_listener_conf(self.tls_port, self.ca)
        self.stack = Stack(broker_conf=conf)
        if tls:
            self.extra = {"broker": {"host": "127.0.0.1", "port": self.tls_port, "tls": True, "ca": "ca.pem"}}
        self.tls, self.frozen = tls, frozen
        self.runs = 0
        self.resets = []  # ids of the runs whose device reset itself to reconnect (bench/device_footprint.py)
        # True: a run whose device had to reset itself to reconnect counts as failed. A reset is a
        # reboot on a board: the link and a relay drop for seconds, the boot count grows.
        self.no_reset = False

    def works(self, interpreter, heap):
        """One fresh device runs the whole session in -X heapsize=heap: True when every step answered ok
        (and, with no_reset, the device came back after the broker restart without resetting itself).
        interpreter None: the venv's 64-bit unix port (ROMFS then mapped outside its heap by
        tools/romfs.py)."""
        from bench.device_footprint import session_works
        from tools import sim
        self.runs += 1
        dev_id = "h%d" % self.runs
        if self.tls:
            d = self.stack.dir / "devices" / dev_id
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.ca["ca"], d / "ca.pem")
        load = {"romfs": self.romfs} if self.romfs else {"firmware_dir": self.fw}
        resets = len(self.resets)
        real = sim.start_device
        if interpreter is not None:
            sim.start_device = self._starter(interpreter, heap)
        try:
            ok = session_works(self.stack, heap, dict(load, extra=self.extra), dev_id, self.resets)
        finally:
            sim.start_device = real
        return ok and not (self.no_reset and len(self.resets) > resets)

    def _starter(self, interpreter, heap):
        """A tools.sim.start_device that runs the 32-bit build: from .mpy files, or with the ROMFS
        image mounted (bench/romfs32_boot.py), given as much more heap as the image takes, or with
        the firmware frozen in."""
        fw, romfs, frozen = self.fw, self.romfs, self.frozen

        def start(workdir, heapsize=None, stdout=None, stderr=None, firmware_dir=None, romfs_image=None, **_kw):
            import subprocess
            env = dict(os.environ, MICROPYPATH=".frozen")
            size = heap
            if romfs:
                padded = -(-romfs.stat().st_size // 16) * 16
                size = heap + padded + padded * 3 // 128 + 64  # the image's block and its GC table bits
                env.update(WISP_ROMFS_FILE=str(romfs), WISP_MAIN=str(fw / "main.py"))
                run = [str(Path(__file__).with_name("romfs32_boot.py"))]
            elif frozen:
                if (Path(workdir) / "wisp").exists():
                    raise RuntimeError("a wisp folder in the flash root would shadow the frozen package")
                shutil.copy(fw / "main.py", Path(workdir) / "main.py")  # '' precedes .frozen on sys.path
                run = ["-m", "main"]
            else:
                flash_root(fw, workdir)
                run = ["-m", "main"]
            return subprocess.Popen([str(interpreter), "-X", "heapsize=%d" % size, *run], cwd=str(workdir),
                                    env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        return start

    def smallest(self, interpreter, lo, hi, runs, step=4096):
        """The smallest heap (in steps) that works `runs` of `runs`: bisect with single runs,
        then step up until every run works. None if hi does not."""
        if self.successes(interpreter, hi, runs) < runs:
            return None
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            lo, hi = (lo, mid) if self.works(interpreter, mid) else (mid, hi)
        while self.successes(interpreter, hi, runs) < runs:
            hi += step
        return hi

    def successes(self, interpreter, heap, runs):
        return sum(self.works(interpreter, heap) for _ in range(runs))

    def close(self):
        self.stack.close()
        self.tmp.cleanup()
