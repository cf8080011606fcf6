"""`wisp deploy`: copy the changed firmware files to a running board over mpremote, then soft-reset it.

One round trip hashes what the board holds (sha256 via exec), one copies what differs and removes
stale files under wisp/ (a leftover wisp/x.py would shadow the new wisp/x.mpy), then a Ctrl-D at the
friendly REPL reboots into main.py. mpremote connects with `resume` so it does not soft-reset first:
on a board that only costs a clean heap, but the unix port behind a virtual device would exit.
"""
import hashlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools import repl
from tools.image import DEFAULT_MARCH, stage_firmware
from tools.listen import json_object
from tools.paths import FIRMWARE

MPREMOTE_TIMEOUT_S = 120     # copying a full firmware at 115200 baud takes ~20 s
FIRST_CONTACT_S = 30         # the first exchange (hashes, id) takes ~2 s; mpremote waits for good on a silent port
PACKAGE_DIR = "wisp"         # only files under here are ever removed from the board
BACK_ONLINE_TIMEOUT_S = 60   # boot, Wi-Fi, NTP and the broker: a board takes ~5-15 s
RETAINED_WAIT_S = 0.5        # retained messages arrive right after subscribing
ROOT_FILES = ("boot.py", "main.py", "wispboot.mpy", "config.json")
# Dropped at every deploy: the over-the-air pointer would keep booting an update's slot instead of the
# firmware just copied (docs/ota.md, recovering a board by USB).
OTA_POINTER = "ota.json"

# Runs on the board: print "D <dir>" and "H <path> <sha256>" for the firmware's files.
_HASH_SCRIPT = """
import os, hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return
    s = hashlib.sha256()
    b = bytearray(1024)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        s.update(m[:n])
    f.close()
    print('H', p, binascii.hexlify(s.digest()).decode())
def _w(d):
    try:
        es = list(os.ilistdir(d))
    except OSError:
        return
    for e in es:
        p = d + '/' + e[0]
        if e[1] == 0x4000:
            print('D', p)
            _w(p)
        else:
            _h(p)
if '%(pkg)s' in os.listdir():
    print('D %(pkg)s')
_w('%(pkg)s')
for _p in %(roots)r:
    _h(_p)
import sys
print('P', sys.platform)
"""


class DeployError(Exception):
    pass


class BoardSilent(DeployError):
    """mpremote got no answer from the port within its time."""


@dataclass
class Result:
    copied: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    unchanged: int = 0
    bytes_copied: int = 0


def mpremote(port, *args, timeout=MPREMOTE_TIMEOUT_S):
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BoardSilent(f"the board on {port} did not answer within {timeout} s") from None
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(f"mpremote on {port} failed: {err[-1] if err else 'exit code %d' % done.returncode}")
    return done.stdout


def first_contact(port, code):
    """Run code on the board, bounded: mpremote waits for good on a port where nothing answers."""
    try:
        return mpremote(port, "exec", code, timeout=FIRST_CONTACT_S)
    except BoardSilent:
        raise DeployError(f"nothing answered on {port} within {FIRST_CONTACT_S} s: is a board running MicroPython "
                          f"on it, and no other program (a REPL, a serial monitor) holding the port?") from None


def board_files(port, roots=ROOT_FILES):
    """{path: sha256} and the set of directories the board holds under wisp/ (plus the files `roots`),
    and its sys.platform ("esp32" on every ESP32; the unix port standing in for one says "linux")."""
    out = first_contact(port, _HASH_SCRIPT % {"pkg": PACKAGE_DIR, "roots": tuple(roots)})
    hashes, dirs, platform = {}, set(), None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "H":
            hashes[parts[1]] = parts[2]
        elif len(parts) == 2 and parts[0] == "D":
            dirs.add(parts[1])
        elif len(parts) == 2 and parts[0] == "P":
            platform = parts[1]
    return hashes, dirs, platform


def plan(stage, hashes, dirs, prune=True):
    """Which staged files to copy, which board files to remove, which directories to create."""
    copy = []
    for rel in stage.files:
        digest = hashlib.sha256((stage.root / rel).read_bytes()).hexdigest()
        if hashes.get(rel) != digest:
            copy.append(rel)
    wanted = set(stage.files)
    remove = sorted(p for p in hashes if prune and p.startswith(PACKAGE_DIR + "/") and p not in wanted)
    mkdirs = []
    for rel in copy:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs and d not in mkdirs:
                mkdirs.append(d)
    return copy, remove, mkdirs


def deploy(port, config=None, prune=True, reset=True, mp_version=None, march=DEFAULT_MARCH, firmware=FIRMWARE,
           log=print, lines=False, extra_files=None):
    """Bring the board on `port` up to date with `firmware` (+ `config` as config.json when given, and
    `extra_files`, {name on the board: host file}, what the config names, e.g. its broker CA)."""
    result = Result()
    with tempfile.TemporaryDirectory(prefix="wisp-deploy-") as tmp:
        hashes, dirs, platform = board_files(port, ROOT_FILES + tuple(sorted(extra_files or ())))
        # anything but an ESP32 runs the simulated board (wisp/hal picks it where `esp32` is missing)
        stage = stage_firmware(Path(tmp) / "root", config, march=march, mp_version=mp_version,
                               firmware=firmware, lines=lines, simulator=platform != "esp32",
                               extra_files=extra_files)
        copy, remove, mkdirs = plan(stage, hashes, dirs, prune)
        result.unchanged = len(stage.files) - len(copy)
        script = "import os\n" + "".join(f"os.mkdir({d!r})\n" for d in mkdirs) + \
                 "".join(f"os.remove({p!r})\n" for p in remove) + \
                 f"try:\n os.remove({OTA_POINTER!r})\nexcept OSError:\n pass\n"
        mpremote(port, "exec", script)
        if copy:
            args = []
            for rel in copy:
                args += ["fs", "cp", str(stage.root / rel), ":" + rel, "+"]
            log(f"wisp: copying {len(copy)} of {len(stage.files)} files to {port}")
            mpremote(port, *args[:-1])
        result.copied, result.removed = copy, remove
        result.bytes_copied = sum((stage.root / rel).stat().st_size for rel in copy)
    if reset:
        repl.soft_reset(port)
    return result


def board_identity(port):
    """(device id, broker host, broker port) from the board's config.json, or None."""
    out = first_contact(port, "import json\ntry:\n c = json.load(open('config.json'))\n"
                              " print('ID', c['id'], c['broker']['host'], c['broker'].get('port', 1883))\n"
                              "except Exception as e:\n print('NOID', repr(e))")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ID" and parts[3].isdigit():
            return parts[1], parts[2], int(parts[3])
    return None


def reset_and_wait_online(port, dev_id, listener, timeout_s=BACK_ONLINE_TIMEOUT_S):
    """Soft-reset the board and wait for its agent to announce itself again (a live, not retained,
    "online" status). `listener` is subscribed to the device's status already, so the announcement
    cannot slip by between the reset and the subscription. Raises DeployError when it never comes."""
    status_topic = f"wisp/{dev_id}/status"
    while listener.get(RETAINED_WAIT_S) is not None:
        pass                                # the retained status of before the reset
    repl.soft_reset(port)
    deadline = time.monotonic() + timeout_s
    while (msg := listener.get(deadline - time.monotonic())) is not None:
        topic, payload, retained = msg
        if topic == status_topic and not retained and _state(payload) == "online":
            return
    raise DeployError(f"device '{dev_id}' did not come back online within {timeout_s:.0f} s after the reset: "
                      f"its firmware may not boot; `wisp repl --port {port}` shows the board's console")


def _state(payload):
    body = json_object(payload)
    return body.get("state") if body else None


