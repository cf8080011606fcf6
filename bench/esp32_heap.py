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

from tools.paths import REPO

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


class Session:
    """A stack (broker, bridge, fake tier) and the compiled firmware, to run sessions in.
    tls: the device talks to the broker over TLS with a pinned CA (RSA-2048, as most brokers)."""

    def __init__(self, tls=False):
        from bench.device_footprint import compile_firmware
        from tests.e2e.stack import Stack
        from tests.tlsutil import make_ca, tls_listener_conf
        from tools import broker as brokers
        self.tmp = tempfile.TemporaryDirectory(prefix="wisp-esp32heap-")
        self.fw = Path(self.tmp.name) / "mpy"
        compile_firmware(self.fw)
        self.extra = None
        conf = ""
        if tls:
            self.ca = make_ca(Path(self.tmp.name) / "ca")
            self.tls_port = brokers.free_port()
            conf = tls_listener_conf(self.tls_port, self.ca)
        self.stack = Stack(broker_conf=conf)
        if tls:
            self.extra = {"broker": {"host": "127.0.0.1", "port": self.tls_port, "tls": True, "ca": "ca.pem"}}
        self.tls = tls
        self.runs = 0

    def works(self, interpreter, heap):
        """One fresh device runs the whole session in -X heapsize=heap: True when every step answered ok."""
        from bench.device_footprint import session_works
        self.runs += 1
        dev_id = "h%d" % self.runs
        if self.tls:
            d = self.stack.dir / "devices" / dev_id
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.ca["ca"], d / "ca.pem")
        saved = os.environ.get("WISP_MICROPYTHON")
        os.environ["WISP_MICROPYTHON"] = str(interpreter)
        try:
            return session_works(self.stack, heap, {"firmware_dir": self.fw, "extra": self.extra}, dev_id)
        finally:
            if saved is None:
                os.environ.pop("WISP_MICROPYTHON", None)
            else:
                os.environ["WISP_MICROPYTHON"] = saved

    def successes(self, interpreter, heap, runs):
        return sum(self.works(interpreter, heap) for _ in range(runs))

    def close(self):
        self.stack.close()
        self.tmp.cleanup()
