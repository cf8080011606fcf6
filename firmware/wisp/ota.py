# Over-the-air application updates (docs/ota.md): take a signed offer, fetch its bundle over MQTT
# chunk by chunk straight into the inactive slot (ota/a or ota/b, never what is running), check
# every file, then point ota.json at the slot and reboot; wispboot.py guards the first boots and
# rolls back by itself. Imported only while an update runs, and briefly after each connect once
# the device has taken one; the job lives on the device (dev.ota_job) so this module can unload.
import asyncio
import binascii
import gc
import hashlib
import json
import os
import struct

from wisp import VERSION, limits, store, unload
from wisp.log import log

POINTER = "ota"          # ota.json on the flash root, read by wispboot before wisp loads
OFFER = "ota/offer"      # the offer being fetched (.json), saved once its signature checked out
GOT = "ota/got"          # progress (.json): bytes fetched and checked, next file (-1: the manifest)
MANIFEST = "MANIFEST"    # first in a bundle and in a slot: "<sha256> <size> <path>" per line
HEAD = 12                # ota/chunk header: offset (u32 big-endian) + first 8 hex digits of the manifest hash
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_./"


class Failed(Exception):
    pass


class Stalled(Exception):
    pass


class Replaced(Exception):
    pass


def _hex(h):
    return binascii.hexlify(h.digest()).decode()


def clear(d):
    """Remove directory d and everything under it (a slot being replaced)."""
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return
    for e in entries:
        path = d + "/" + e[0]
        if e[1] == 0x4000:
            clear(path)
        else:
            os.remove(path)
    os.rmdir(d)


def _mkdirs(path):
    d = ""
    for part in path.split("/")[:-1]:
        d = d + "/" + part if d else part
        try:
            os.mkdir(d)
        except OSError:
            pass  # exists


def version(text):
    """"1.2.3" as (1, 2, 3), or None when it is not plain dotted numbers."""
    if not isinstance(text, str) or not 0 < len(text) <= 16:
        return None
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


def _good_path(path):
    if not path.startswith("wisp/") or ".." in path or "//" in path:
        return False
    if not path.endswith(".mpy") and path != "wisp/strings.bin":  # the strings the modules read (wisp.flash_text)
        return False
    for ch in path:
        if ch not in _PATH_CHARS:
            return False
    return True


def _int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check(dev, o):
    """Why offer o cannot be taken by this device, or None."""
    if not isinstance(o, dict) or not _int(o.get("v"), 1, 1):  # not true, which equals 1 in Python
        return "not a version 1 offer"
    if o.get("dev") != dev.id:
        return "bundle is for device %r, not this one" % (o.get("dev"),)
    from wisp.sched import CLOCK_VALID_AFTER, unix_time
    ts, now = o.get("ts"), unix_time()
    if now < CLOCK_VALID_AFTER:  # no NTP time yet: sending the offer anew could never help
        return "the device clock is not set (no NTP time yet), so the offer's age cannot be checked"
    if not isinstance(ts, (int, float)) or not now - limits.CMD_WINDOW_S <= ts <= now + limits.CMD_FUTURE_S:
        # a recorded offer replayed later (a forced downgrade, an update rolled back) is refused
        return "not signed in the last %d s by this device's clock ('ts'): send it anew" % limits.CMD_WINDOW_S
    new, cur = version(o.get("ver")), version(VERSION)
    if new is None:
        return "version %r is not dotted numbers" % (o.get("ver"),)
    if new == cur:
        return "already running %s" % VERSION
    if new < cur and o.get("force") is not True:
        return "downgrade from %s to %s refused (not forced)" % (VERSION, o["ver"])
    man = o.get("man")
    if not isinstance(man, str) or len(man) != 64:
        return "manifest hash missing"
    if not (_int(o.get("msize"), 1, limits.OTA_MAX_FILES * 96) and _int(o.get("files"), 1, limits.OTA_MAX_FILES)
            and _int(o.get("size"), o["msize"], limits.OTA_MAX_BYTES)
            and _int(o.get("health_s"), limits.OTA_HEALTH_MIN_S, limits.OTA_HEALTH_MAX_S)):
        return "sizes, file count or health deadline out of bounds"
    try:
        st = os.statvfs(".")
        free = st[1] * st[4]  # fragment size x blocks free to us
    except (AttributeError, OSError):
        return None
    if free < o["size"] + limits.OTA_SPARE_BYTES:
        return "flash full: the bundle needs %d bytes + %d spare, %d free" % (o["size"], limits.OTA_SPARE_BYTES, free)
    return None


async def report(dev, state, text="", **extra):
    """The update's state, retained on wisp/<id>/ota/state for `wisp ota --status` and the host."""
    body = {"v": 1, "state": state, "fw": VERSION, "text": text}
    body.update(extra)
    if text:
        log("ota: %s: %s" % (state, text))
    await dev.link.publish(dev.topic("ota/state"), json.dumps(body), True, 1, 0)


async def on_offer(dev, payload, size=0):
    body = None
    if dev.key is not None and payload:
        from wisp import sign  # resident on a device with a key (wisp/device.py)
        body = sign.verify(dev.key, payload)
    if body is None:
        why = "unsigned, or signed with another key" if dev.key is not None else \
            "this device has no key (wisp provision) so it takes no updates"
        if payload is None:  # over MAX_PAYLOAD: the link skipped it unread, no signature was seen
            why = "%d bytes, over the device's limit of %d for a message" % (size, limits.MAX_PAYLOAD)
        return await report(dev, "refused", "offer refused: " + why)
    try:
        o = json.loads(body)
    except ValueError:
        o = None
    why = check(dev, o)
    if why is None and store.load_dict(POINTER).get("trial"):
        why = "the last update is not confirmed yet"
    if why:
        o = o if isinstance(o, dict) else {}
        # "id" echoes the offer's: the host tells its answer from one to an earlier offer of the same bundle
        return await report(dev, "refused", "offer refused: " + why, ver=o.get("ver"), id=o.get("id"))
    job = getattr(dev, "ota_job", None)
    if job is not None:
        if job.o["man"] == o["man"]:
            job.o["id"] = o.get("id")  # its outcome answers this offer now
            job.wake()  # the host offered again (it restarted): keep going from where we are
            return
        job.stop = True  # another bundle: let the running job let go of the slot first
        job.wake()
        for _ in range(100):
            if getattr(dev, "ota_job", None) is not job:
                break
            await asyncio.sleep_ms(20)
    if store.load_dict(OFFER).get("man") != o["man"]:
        cur = store.load_dict(POINTER).get("cur")
        o["slot"] = "b" if cur == "a" else "a"
        _mkdirs(OFFER)
        store.remove(GOT + ".json")
        clear("ota/" + o["slot"])
        store.save(OFFER, o)
    start(dev)


def start(dev):
    o = store.load(OFFER, None)
    if not isinstance(o, dict) or getattr(dev, "ota_job", None) is not None:
        return
    dev.ota_job = Job(dev, o)
    asyncio.create_task(dev.ota_job.run())


async def on_connect(dev):
    """After each connect: confirm a version on trial (it booted and connected: healthy), drop
    what a finished switch left, resume a transfer a reboot or a dropped link cut short."""
    p = store.load_dict(POINTER)
    if p.get("trial"):
        p["trial"], p["state"] = False, "ok"
        p["result"] = "%s confirmed healthy: connected at boot %d after the switch" % (VERSION, p.get("tries", 0))
        store.save(POINTER, p)
    pending = store.load_dict(OFFER)
    if not pending or pending.get("man") == p.get("man"):  # none, or the switch was cut after
        store.remove(OFFER + ".json")  # the pointer was written
        store.remove(GOT + ".json")
        if getattr(dev, "ota_job", None) is None and p:
            await report(dev, p.get("state") or "ok", p.get("result") or "", ver=p.get("ver"))
        return
    start(dev)
    dev.ota_job.wake()


class Job:
    """One bundle being fetched: asks for the next chunk it needs (ota/need), writes what comes
    back (ota/chunk) at the end of the file it is building, one chunk in RAM at a time."""

    def __init__(self, dev, offer):
        self.dev, self.o = dev, offer
        self.slot = "ota/" + offer["slot"]
        self.chunk = None
        self.arrived = asyncio.Event()
        self.stop = False
        self.stray = 0  # chunks ignored: repeated, out of order, another bundle's

    def take(self, payload):
        if payload is not None and len(payload) > HEAD:
            self.chunk = payload
            self.arrived.set()

    def wake(self):
        self.chunk = None
        self.arrived.set()  # re-ask now rather than after the chunk timeout

    async def run(self):
        o, dev = self.o, self.dev
        try:
            got = store.load_dict(GOT)
            if got.get("man") != o["man"]:
                got = {"man": o["man"], "off": 0, "file": -1}
            await report(dev, "fetching", "", ver=o["ver"], off=got["off"], size=o["size"])
            while got["file"] < o["files"]:
                i = got["file"]
                if i < 0:
                    want, size, path = o["man"], o["msize"], MANIFEST
                else:
                    want, size, path = self.entry(i)
                await self.fetch(self.slot + "/" + path, got["off"], size, want)
                if i < 0:
                    self.check_manifest()
                got = {"man": o["man"], "off": got["off"] + size, "file": i + 1}
                store.save(GOT, got)
                if i % 8 == 7:
                    await report(dev, "fetching", "", ver=o["ver"], off=got["off"], size=o["size"])
            await report(dev, "verifying", "", ver=o["ver"])
            self.verify()
            await self.switch()
        except Replaced:
            pass  # a newer offer took over the slot and the progress files
        except Stalled:
            await report(dev, "stalled", "no chunk for %d s; resumes at the next offer or connect"
                         % (limits.OTA_STALL_MS // 1000), ver=o["ver"])
        except Exception as e:  # Failed, OSError (flash full), MemoryError: drop the update, keep running
            why = str(e) if isinstance(e, Failed) else "%r" % (e,)
            if isinstance(e, OSError) and e.args and e.args[0] == 28:
                why = "flash full while writing the bundle"
            self.drop()
            await report(dev, "failed", "update to %s dropped: %s; still running %s" % (o["ver"], why, VERSION),
                         ver=o["ver"], id=o.get("id"))
        finally:
            if dev.ota_job is self:
                dev.ota_job = None
                unload("wisp.ota")

    def drop(self):
        store.remove(OFFER + ".json")
        store.remove(GOT + ".json")
        try:
            clear(self.slot)
        except OSError:
            pass

    def entry(self, i):
        """(sha256, size, path) of file i of the manifest."""
        with open(self.slot + "/" + MANIFEST) as f:
            for n, line in enumerate(f):
                if n == i:
                    want, size, path = line.split()
                    return want, int(size), path
        raise Failed("manifest has no file %d" % i)

    def check_manifest(self):
        o, n, total = self.o, 0, self.o["msize"]
        with open(self.slot + "/" + MANIFEST) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3 or len(parts[0]) != 64 or not _good_path(parts[2]):
                    raise Failed("manifest line %d is malformed" % (n + 1))
                total += int(parts[1])
                n += 1
        if n != o["files"] or total != o["size"]:
            raise Failed("manifest lists %d files, %d bytes; the offer said %d, %d" % (n, total, o["files"], o["size"]))

    async def fetch(self, path, start, size, want):
        for _try in range(limits.OTA_FILE_TRIES):
            _mkdirs(path)
            h = hashlib.sha256()
            pos = 0
            with open(path, "wb") as f:
                while pos < size:
                    data = await self.get(start + pos, min(limits.OTA_CHUNK, size - pos))
                    f.write(data)
                    h.update(data)
                    pos += len(data)
            if _hex(h) == want:
                return
            log("ota: %s failed its hash; fetching it again" % path)
        raise Failed("%s failed its hash %d times (corrupted in transit)" % (path, limits.OTA_FILE_TRIES))

    async def get(self, off, n):
        """The n bytes of the bundle at off (or fewer), asked for until they come."""
        o, tag = self.o, self.o["man"][:8].encode()
        need = json.dumps({"v": 1, "man": o["man"], "off": off, "n": n})
        quiet = 0
        while not self.stop:
            self.chunk = None
            self.arrived.clear()
            await self.dev.link.publish(self.dev.topic("ota/need"), need, False, 0)
            while True:
                try:
                    await asyncio.wait_for_ms(self.arrived.wait(), limits.OTA_CHUNK_WAIT_MS)
                except asyncio.TimeoutError:
                    break
                c, self.chunk = self.chunk, None
                self.arrived.clear()
                if c is None:
                    break  # woken: ask again now
                if c[4:HEAD] != tag or struct.unpack(">I", c[:4])[0] != off or len(c) - HEAD > n:
                    self.stray += 1  # repeated, out of order, or another bundle's: not what we asked
                    continue
                await asyncio.sleep_ms(limits.OTA_GAP_MS)
                gc.collect()  # each chunk leaves its read buffers behind: keep the heap unfragmented
                return memoryview(c)[HEAD:]
            quiet += limits.OTA_CHUNK_WAIT_MS
            if quiet >= limits.OTA_STALL_MS:
                raise Stalled()
        raise Replaced()

    def verify(self):
        """Every file as it lies on flash against the manifest (the signed offer holds its hash)."""
        buf = bytearray(512)
        for i in range(-1, self.o["files"]):
            want, size, path = (self.o["man"], self.o["msize"], MANIFEST) if i < 0 else self.entry(i)
            h, n = hashlib.sha256(), 0
            with open(self.slot + "/" + path, "rb") as f:
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    h.update(memoryview(buf)[:k])
                    n += k
            if n != size or _hex(h) != want:
                raise Failed("%s changed on flash after it was written" % path)

    async def switch(self):
        o = self.o
        p = store.load_dict(POINTER)
        store.save(POINTER, {"cur": o["slot"], "ver": o["ver"], "prev": p.get("cur"), "prev_ver": VERSION,
                             "trial": True, "tries": 0, "health_s": o["health_s"], "man": o["man"],
                             "state": "switching", "result": ""})
        store.remove(OFFER + ".json")
        store.remove(GOT + ".json")
        await report(self.dev, "rebooting", "%s written and checked; rebooting into it" % o["ver"], ver=o["ver"])
        self.dev.board.reset()
