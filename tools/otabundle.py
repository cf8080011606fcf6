"""Update bundles for `wisp ota`: the firmware's wisp/ package compiled to .mpy (with the strings
catalog its modules read, tools/flashtext.py), behind a manifest of
"<sha256> <size> <path>" lines, and per device a signed offer naming the manifest's hash (docs/ota.md).

The bundle is one byte string, manifest first, then each file in manifest order; the device fetches it
by offset. The offer is HMAC-signed with the device's own key, so it verifies the manifest, and through
it every file, with nothing new to provision.
"""
import hashlib
import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tools import constfold, flashtext, shortnames
from tools.image import DEFAULT_MARCH, compile_mpy
from tools.paths import FIRMWARE

HEALTH_S = 60        # seconds the new version has to connect after its reboot...
HEALTH_RANGE_S = (5, 600)  # ...within the device's OTA_HEALTH_MIN_S and OTA_HEALTH_MAX_S (wisp/limits.py)
VERSION_LINE = re.compile(r'^VERSION = "([0-9.]+)"$', re.M)
VERSION_RULE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_VERSION_LEN = 16  # as the device reads it (wisp/ota.py version())


class BundleError(Exception):
    pass


@dataclass
class Bundle:
    version: str
    blob: bytes          # manifest + files
    manifest_size: int
    manifest_sha: str
    files: list          # [(path, size, sha256)]

    @property
    def size(self):
        return len(self.blob)


def checkout_version(firmware=FIRMWARE):
    m = VERSION_LINE.search((Path(firmware) / "wisp" / "__init__.py").read_text())
    if not m:
        raise BundleError(f"no VERSION = \"x.y.z\" line in {firmware}/wisp/__init__.py")
    return m.group(1)


def version_tuple(text):
    if not (isinstance(text, str) and len(text) <= MAX_VERSION_LEN and VERSION_RULE.match(text)):
        raise BundleError(f"version {text!r} must be dotted numbers, e.g. 0.2.0 (at most {MAX_VERSION_LEN} characters)")
    return tuple(int(p) for p in text.split("."))


def build(version=None, firmware=FIRMWARE, march=DEFAULT_MARCH, patch=None):
    """The bundle of `firmware`/wisp. version: stamped into wisp/__init__.py (default: the checkout's).
    patch: {relative path: source text} replacing files, for tests that need a broken update."""
    firmware = Path(firmware)
    version = version or checkout_version(firmware)
    version_tuple(version)
    files, datas = [], []
    with tempfile.TemporaryDirectory(prefix="wisp-ota-") as tmp:
        for src in sorted((firmware / "wisp").rglob("*.py")):
            rel = src.relative_to(firmware).as_posix()
            text = (patch or {}).get(rel, src.read_text())
            if rel == "wisp/__init__.py":
                text, n = VERSION_LINE.subn(f'VERSION = "{version}"', text)
                if n != 1:
                    raise BundleError("wisp/__init__.py must hold one VERSION line")
            source = Path(tmp) / rel
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(text)
        # compiled once the whole package is written: constants are inlined from it (tools/constfold.py)
        consts = constfold.package_consts(Path(tmp) / "wisp")
        kept = shortnames.package_kept(Path(tmp) / "wisp", firmware.glob("*.py"), consts)  # as the image's
        catalog = flashtext.package_catalog(Path(tmp) / "wisp")
        compiled = []
        for source in sorted((Path(tmp) / "wisp").rglob("*.py")):
            rel = source.relative_to(tmp).as_posix()
            out = source.with_suffix(".mpy")
            compile_mpy(source, out, rel, march, consts=consts, kept=kept, catalog=catalog)
            compiled.append((rel[:-3] + ".mpy", out.read_bytes()))
        compiled.append((flashtext.CATALOG, catalog.blob()))
        for path, data in compiled:
            files.append((path, len(data), hashlib.sha256(data).hexdigest()))
            datas.append(data)
    manifest = "".join(f"{sha} {size} {path}\n" for path, size, sha in files).encode()
    return Bundle(version, manifest + b"".join(datas), len(manifest), hashlib.sha256(manifest).hexdigest(), files)


def offer(bundle, dev_id, key, force=False, health_s=HEALTH_S, offer_id=None):
    """The signed offer of `bundle` to device `dev_id` (bytes for wisp/<id>/ota/offer), stamped with the
    time: the device takes it only within a few minutes of that, so sign one for each publish.
    offer_id: a short text the device echoes as "id" in the ota/state that answers this offer."""
    from bridge.signing import sign_message
    msg = {"v": 1, "dev": dev_id, "ver": bundle.version, "man": bundle.manifest_sha, "msize": bundle.manifest_size,
           "size": bundle.size, "files": len(bundle.files), "force": bool(force), "health_s": int(health_s),
           "ts": int(time.time())}
    if offer_id is not None:
        msg["id"] = offer_id
    return sign_message(key, msg)


def chunk(bundle, off, n):
    """The ota/chunk payload answering a device's ota/need for n bytes at off (header: offset, hash tag)."""
    return off.to_bytes(4, "big") + bundle.manifest_sha[:8].encode() + bundle.blob[off:off + n]


def describe(bundle):
    return json.dumps({"version": bundle.version, "files": len(bundle.files), "bytes": bundle.size})
