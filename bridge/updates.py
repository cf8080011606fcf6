"""Over-the-air updates started from the REST API (docs/ota.md): one rollout at a time, run by the same code
as `wisp ota` (tools/ota.py, tools/otabundle.py) in a thread, with the bridge's broker login and the fleet's
signing keys. The report (per device: waiting, updating, ok, failed, not offered) is what GET /api/ota shows.

The bundle is built from the firmware/ of the checkout the bridge runs from, with mpy-cross.
"""
from __future__ import annotations

import copy
import logging
import threading
import time

log = logging.getLogger("wisp.bridge.updates")


class Unavailable(Exception):
    """This bridge cannot run updates (no plain broker listener, or no signing keys)."""


class Busy(Exception):
    """A rollout is already running."""


class Updates:
    def __init__(self, broker: tuple[str, int, tuple[str, str] | None] | None, keys: dict[str, bytes] | None,
                 why_not: str = ""):
        self.broker, self.keys = broker, keys or {}
        self.why_not = why_not or "updates need the broker's address"
        self.report: dict | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> dict | None:
        with self._lock:
            return copy.deepcopy(self.report)

    def start(self, ids: list[str], *, version: str | None = None, force: bool = False, health_s: int = 60,
              canary: int = 0, then: str | int = "100%", max_failures: int = 0, timeout_s: float = 300,
              running: dict[str, str] | None = None) -> dict:
        """running: {id: the firmware it runs}, for a fleet rollout: devices already on the version are left out
        (tools/ota.py already), so a rollout posted again after it stopped resumes where it did."""
        if self.broker is None:
            raise Unavailable(self.why_not)
        missing = [d for d in ids if d not in self.keys]
        if missing:
            raise Unavailable(f"no signing key for {', '.join(missing)}: updates are signed with each device's key "
                              "(`wisp provision`, and [signing] keys in the bridge's config)")
        if self.running():
            raise Busy("a rollout is running; GET /api/ota shows its progress")
        from tools import ota, otabundle
        target = version or otabundle.checkout_version()
        skipped = ota.already(ids, running or {}, target)
        batches = ota.stages([d for d in ids if d not in skipped], canary, then)
        devices = {d: {"state": "skipped", "text": f"already running {target}"} if d in skipped
                   else {"state": "waiting"} for d in ids}
        with self._lock:
            self.report = {"state": "building", "version": version, "text": "", "started": time.time(),
                           "finished": None, "stages": batches, "halted": None, "devices": devices}
            if not batches:  # every device runs it already: nothing to build or send
                self.report.update(state="done", version=target, finished=time.time(),
                                   text=ota.summary([], None, skipped, target))
                return copy.deepcopy(self.report)
        self._thread = threading.Thread(target=self._run, name="ota-rollout", daemon=True,
                                        args=(batches, version, force, health_s, max_failures, timeout_s, skipped))
        self._thread.start()
        return self.snapshot()

    def _set(self, **changes) -> None:
        with self._lock:
            self.report.update(changes)

    def _device(self, dev_id: str, **changes) -> None:
        with self._lock:
            self.report["devices"].setdefault(dev_id, {}).update(changes)

    def _run(self, batches, version, force, health_s, max_failures, timeout_s, skipped) -> None:
        from tools import ota, otabundle
        try:
            bundle = otabundle.build(version)
            self._set(state="updating", version=bundle.version)
            host, port, login = self.broker
            server = ota.Server(host, port, bundle, login)
            try:
                results, halted = ota.rollout(
                    server, self.keys, batches, max_failures, progress=self._progress,
                    on_start=lambda d: self._device(d, state="updating"),
                    force=force, health_s=health_s, timeout_s=timeout_s)
            finally:
                server.close()
            for r in results:
                self._device(r.device, state="ok" if r.ok else "failed", text=r.text, before=r.before, after=r.after,
                             seconds=round(r.seconds, 2))
            with self._lock:
                for d in self.report["devices"].values():
                    if d["state"] == "waiting":
                        d["state"] = "not offered"
            self._set(state="halted" if halted else "done", halted=halted, finished=time.time(),
                      text=ota.summary(results, halted, skipped, bundle.version))
        except Exception as e:  # a bundle that does not build, a broker that refuses us: say so, never die silently
            log.warning("rollout failed: %s", e)
            self._set(state="failed", text=str(e), finished=time.time())

    def _progress(self, text: str) -> None:
        dev_id, _, what = text.partition(": ")
        self._device(dev_id, progress=what)
