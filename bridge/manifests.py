"""Device manifests, cached from retained `wisp/<id>/manifest` messages, and the tools the LLM is offered.

Bridges are stateless: the broker keeps every manifest retained, so a (re)started bridge refills this cache
the moment it subscribes.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import re

from bridge import fastjson, protocol
from bridge.rounds.toolset import Catalog

log = logging.getLogger("wisp.bridge.manifests")

MAX_MANIFEST_BYTES = 16 * 1024  # a device's manifest is ~7 KB; with MAX_DEVICES this bounds the cache
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
_EMPTY_PARAMS = {"type": "object", "properties": {}}


def parse_manifest(device_id: str, payload: bytes) -> dict:
    """The manifest as a dict with checked shape; ValueError says what is wrong."""
    if len(payload) > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest is {len(payload)} bytes (limit {MAX_MANIFEST_BYTES})")
    try:
        m = fastjson.loads(payload)
    except ValueError as e:  # nested too deeply too: json.loads recurses per level
        raise ValueError(f"manifest is not JSON: {e}") from None
    if not isinstance(m, dict):
        raise ValueError("manifest is not a JSON object")
    if not protocol.speaks_v1(m):
        raise ValueError(f"manifest has unsupported version v={json.dumps(m.get('v'))}")
    if m.get("id", device_id) != device_id:
        raise ValueError(f"manifest id {m.get('id')!r} does not match its topic")
    if not isinstance(m.get("hash"), str):
        raise ValueError("manifest has no hash string")
    tools = m.get("tools")
    if not isinstance(tools, list):
        raise ValueError("manifest tools must be a list")
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not _TOOL_NAME.match(t["name"]):
            raise ValueError(f"manifest tools[{i}] needs a name of 1-64 letters, digits, _ or -")
        if not isinstance(t.get("desc", ""), str):
            raise ValueError(f"manifest tool {t['name']!r}: desc must be a string")
        if not isinstance(t.get("params", _EMPTY_PARAMS), dict):
            raise ValueError(f"manifest tool {t['name']!r}: params must be a JSON Schema object")
    pins = m.get("pins", {})
    if not isinstance(pins, dict) or not all(isinstance(p, dict) for p in pins.values()):
        raise ValueError("manifest pins must map names to objects")
    for name, p in pins.items():  # both go into the system prompt (bridge/rounds/prompt.py)
        aliases = p.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"manifest pin {name!r}: aliases must be a list of names")
        if not isinstance(p.get("device_class", ""), str):
            raise ValueError(f"manifest pin {name!r}: device_class must be a string")
    m.setdefault("id", device_id)
    return m


FREEZE_EVERY = 256  # new manifests between gc.freeze() calls (each is cheap: it moves lists, walks nothing)


class _SharedTools:
    """One distinct tool list, kept once for every device that publishes it, and its catalog."""

    def __init__(self, tools: list[dict]) -> None:
        self.tools = tools
        self.users = 0
        self.catalog: Catalog | None = None  # built at the first request that needs it


class ManifestCache:
    """Latest valid manifest per device id. Lives on the asyncio loop; no locking needed.

    Devices of one firmware and configuration publish the same tools (~30 KB parsed each): those are stored
    once, by the SHA-256 of their JSON (a digest, so a device cannot pass its tools off as another's), with
    the catalog every round of theirs reads."""

    def __init__(self) -> None:
        self._by_id: dict[str, dict] = {}
        self._unfrozen = 0  # manifests stored since the last gc.freeze()
        self._shared: dict[bytes, _SharedTools] = {}
        self._tools_of: dict[str, bytes] = {}  # device id -> digest of its tools

    def update(self, device_id: str, payload: bytes) -> bool:
        """Store the manifest from a message; junk is logged and ignored (the old copy stays). True if stored."""
        if not payload:  # an empty retained message is how a device's manifest is cleared
            self._by_id.pop(device_id, None)
            self._release(device_id)
            log.info("device=%s manifest cleared", device_id)
            return False
        try:
            manifest = parse_manifest(device_id, payload)
        except ValueError as e:
            log.warning("device=%s manifest ignored: %s", device_id, e)
            return False
        if device_id not in self._by_id and len(self._by_id) >= protocol.MAX_DEVICES:
            log.warning("device=%s manifest ignored: already %d devices", device_id, protocol.MAX_DEVICES)
            return False
        digest = hashlib.sha256(fastjson.dumps(manifest["tools"])).digest()
        shared = self._shared.get(digest)
        if shared is None:
            shared = self._shared[digest] = _SharedTools(manifest["tools"])
        shared.users += 1
        self._release(device_id)
        self._tools_of[device_id] = digest
        manifest["tools"] = shared.tools
        self._by_id[device_id] = manifest
        log.info("device=%s manifest hash=%s tools=%d", device_id, manifest["hash"], len(manifest["tools"]))
        self._unfrozen += 1
        if self._unfrozen >= FREEZE_EVERY:
            # Thousands of parsed manifests are long-lived: a full collection walking them took
            # 28-52 ms per pause with 10,000 devices (bench/fleet.py), the bridge's p99. Frozen
            # objects are left out of collections. Freezing only at each doubling of the cache left
            # up to half of them unfrozen (1,808 of 10,000): full collections still paused 18 ms.
            gc.freeze()
            self._unfrozen = 0
        return True

    def get(self, device_id: str) -> dict | None:
        return self._by_id.get(device_id)

    def catalog(self, device_id: str) -> Catalog | None:
        """What the device's tools offer a round (None without a manifest)."""
        digest = self._tools_of.get(device_id)
        if digest is None:
            return None
        shared = self._shared[digest]
        if shared.catalog is None:
            shared.catalog = Catalog(shared.tools)
        return shared.catalog

    def _release(self, device_id: str) -> None:
        digest = self._tools_of.pop(device_id, None)
        if digest is not None:
            shared = self._shared[digest]
            shared.users -= 1
            if not shared.users:
                del self._shared[digest]

    def __len__(self) -> int:
        return len(self._by_id)
