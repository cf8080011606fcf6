"""`wisp ota`: over-the-air application updates (docs/ota.md). Builds a bundle from this checkout, offers it
to each device signed with that device's key, answers the chunks the device asks for, and follows it
through its reboot until it confirms the new version or rolls back.

    wisp ota dev1                          one device
    wisp ota --all --canary 1 --then 25%   the fleet in stages; a failing stage stops the rollout
    wisp ota dev1 --status                 what each device runs and what its last update did
"""
import argparse
import math
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

from bridge import protocol
from tools import otabundle
from tools.listen import Listener, json_object

OTA_STATE, OTA_NEED = protocol.OTA_STATE, protocol.OTA_NEED
OTA_OFFER, OTA_CHUNK = protocol.OTA_OFFER, protocol.OTA_CHUNK
UPDATE_TIMEOUT_S = 300    # one device, offer to confirmed; a board fetches ~100 KB in well under a minute
STATUS_WAIT_S = 2.0       # retained status arrives right after subscribing
OFFER_AGAIN_S = 10.0      # an offer with no answer (device busy or offline) is sent again after this
# The device's refusal while it has no NTP time yet (firmware/wisp/ota.py check): a board without an RTC battery
# back from a power cut says so until its clock is set, seconds later; the offer is sent again meanwhile.
CLOCK_UNSET = "clock is not set"


class OtaError(Exception):
    pass


@dataclass
class Result:
    device: str
    ok: bool
    text: str
    before: str = ""
    after: str = ""
    seconds: float = 0.0
    chunks: int = 0


@dataclass
class _Watch:
    inbox: queue.Queue = field(default_factory=queue.Queue)


class Server:
    """One MQTT client serving a bundle to any number of devices at once: it answers every ota/need for
    the bundle's manifest hash and hands each device's status and ota/state to whoever follows it."""

    def __init__(self, host, port, bundle, login=None):
        self.bundle = bundle
        self.watches = {}
        self.chunks = 0
        self.served = {}  # chunks sent per device
        self.asked = {}  # device -> monotonic time of its last ota/need: it is fetching, no need to offer again
        self.elsewhere = {}  # device -> time of its last ota/need for another bundle (another host's rollout)
        self.lock = threading.Lock()
        self.listener = Listener(host, port, [protocol.every_device(k) for k in (OTA_NEED, OTA_STATE, protocol.STATUS)],
                                 name="ota", login=login)
        self.listener.client.on_message = self._on_message
        self.listener.wait_subscribed()

    def _on_message(self, client, userdata, m):
        parsed = protocol.parse(m.topic)
        if parsed is None:
            return
        dev_id, kind = parsed[0], "/".join(parsed[1])
        if kind == OTA_NEED:
            self._answer(dev_id, m.payload)
            return
        watch = self.watches.get(dev_id)
        if watch is not None:
            watch.inbox.put((kind, m.payload, bool(m.retain), time.monotonic()))

    def _answer(self, dev_id, payload):
        try:
            need = json_object(payload)
            off, n = int(need["off"]), int(need["n"])
        except (ValueError, KeyError, TypeError):
            return
        if need.get("man") != self.bundle.manifest_sha:
            with self.lock:  # another bundle's transfer (another host's rollout): not ours to answer, nor to
                self.elsewhere[dev_id] = time.monotonic()  # cut short by offering ours again (see _follow)
            return
        if not 0 <= off < self.bundle.size or not 0 < n <= 8192:
            return
        with self.lock:
            self.chunks += 1
            self.served[dev_id] = self.served.get(dev_id, 0) + 1
            self.asked[dev_id] = time.monotonic()
        self.listener.client.publish(protocol.topic(dev_id, OTA_CHUNK), otabundle.chunk(self.bundle, off, n), qos=0)

    def update(self, dev_id, key, force=False, health_s=otabundle.HEALTH_S, timeout_s=UPDATE_TIMEOUT_S, progress=None):
        """Offer the bundle to dev_id and follow it to the end. Returns a Result (never raises for a device's
        failure: a refusal, a failed fetch and a rollback are results)."""
        watch = self.watches[dev_id] = _Watch()
        t0 = time.monotonic()
        self.served[dev_id] = 0
        try:
            res = self._follow(dev_id, watch, key, force, health_s, t0, timeout_s, progress or (lambda text: None))
        finally:
            self.watches.pop(dev_id, None)
        res.chunks = self.served.get(dev_id, 0)
        return res

    def _follow(self, dev_id, watch, key, force, health_s, t0, timeout_s, progress):
        ver = self.bundle.version
        # ask the broker for the retained status once more, now that our inbox exists
        self.listener.client.subscribe(protocol.topic(dev_id, protocol.STATUS), 1)
        before, online, offered, switched, waiting = "", False, 0.0, False, ""
        sent = set()  # this update's offer ids: the device echoes the one it answers

        def result(ok, text):
            return Result(dev_id, ok, text, before, after_fw, time.monotonic() - t0)
        after_fw = ""
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            # a device fetching (ours, or another host's bundle that took it over: re-offering would restart
            # its fetch from zero, each host in turn) is not offered again; once it rebooted, it is
            heard = max(offered, self.asked.get(dev_id, 0.0), self.elsewhere.get(dev_id, 0.0))
            if online and not switched and (not offered or time.monotonic() - heard > OFFER_AGAIN_S):
                offer_id = secrets.token_hex(4)
                sent.add(offer_id)
                offer = otabundle.offer(self.bundle, dev_id, key, force, health_s, offer_id)  # signed now: it is dated
                self.listener.client.publish(protocol.topic(dev_id, OTA_OFFER), offer, qos=1)
                offered = time.monotonic()
            try:
                kind, payload, retained, arrived = watch.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            body = json_object(payload) or {}
            if kind == protocol.STATUS:
                was_online, online = online, body.get("state") == "online"
                if online:
                    after_fw = str(body.get("fw", ""))
                    before = before or after_fw
                    if offered and not switched and after_fw == ver != before:
                        # back on our version though its "rebooting" never reached us (its link, or ours, was
                        # down): switched. Its outcome may be retained already: ask for it again.
                        switched = True
                        self.listener.client.subscribe(protocol.topic(dev_id, OTA_STATE), 1)
                    elif not was_online and not switched:
                        offered = 0.0  # (re)connected: offer now (the same status twice, as our subscription
                        # and the listener's both fetch the retained one, is no reason to offer twice)
                continue
            if kind != OTA_STATE or not offered or not _answers(body, sent, arrived, offered, retained, switched):
                continue
            state, text = body.get("state"), str(body.get("text", ""))
            if state in ("fetching", "stalled", "verifying", "rebooting") and body.get("ver") != ver:
                continue  # the transfer of another host's bundle, which took over from ours
            after_fw = str(body.get("fw") or after_fw)  # what it runs as it says this: its status may come later
            if state == "refused" and CLOCK_UNSET in text and not switched:
                waiting = text  # what to say if its clock is never set before the deadline
                progress(f"{dev_id}: {text}; offering again in {OFFER_AGAIN_S:g} s")
                continue  # `offered` stands: the next offer goes out OFFER_AGAIN_S after this one
            if state == "refused" or state == "failed":
                return result(False, text)
            if state == "fetching":
                progress(f"{dev_id}: fetching {body.get('off', 0)}/{body.get('size', '?')} bytes")
            elif state == "stalled":
                offered = 0.0
            elif state == "rebooting":
                switched = True
                progress(f"{dev_id}: {text}")
            elif state == "ok" and switched:
                if body.get("fw") == ver:
                    return result(True, text)
            elif state == "rolled back":
                return result(False, text)
        return result(False, f"no outcome within {timeout_s:g} s"
                      + (" after the switch" if switched else f": {waiting}" if waiting
                         else " (is the device online and provisioned?)"))

    def close(self):
        self.listener.close()


def _answers(state, sent, arrived, offered, retained=False, switched=False):
    """Whether ota/state `state` answers one of this update's offers (ids in `sent`, the last published at
    `offered`) rather than an earlier update's: the device may still be answering a re-sent offer of the last
    `wisp ota`, and its state can reach us after our own offer. A state that names its offer (a refusal or a
    failure, from firmware that echoes the offer's id) is told by that id; any other only by arriving after
    our last offer, live. A retained one (sent to us as we (re)subscribed) is an earlier update's, unless we saw
    this update's switch: then it is what the device said since (it confirmed or rolled back while our link
    to the broker was down), as the switch's own retained state replaced any older one."""
    echoed = state.get("id")
    if echoed is not None:
        return str(echoed) in sent
    if retained:
        return switched
    return arrived >= offered


def stages(devices, canary, then):
    """Split devices into batches: the first `canary`, then batches of `then` (a count, or "25%" of all)."""
    devices = list(devices)
    if isinstance(then, str) and then.endswith("%"):
        size = max(1, math.ceil(len(devices) * float(then[:-1]) / 100))
    else:
        size = max(1, int(then))
    out = [devices[:canary]] if canary > 0 else []
    rest = devices[canary:] if canary > 0 else devices
    out += [rest[i:i + size] for i in range(0, len(rest), size)]
    return [b for b in out if b]


def already(ids, running, version):
    """The devices of a fleet rollout that already run `version` (running: {id: firmware}). They are left out
    of its stages, so a rollout run again after it stopped (Ctrl-C, a halted stage) resumes with the devices
    it had not updated, instead of halting on its canary's "already running" refusal."""
    return [d for d in ids if running.get(d) == version]


def rollout(server, keys, batches, max_failures=0, progress=None, on_start=None, results=None, **kw):
    """Update batch after batch (devices of one batch in parallel). A batch with more than max_failures
    failures stops the rollout. on_start(dev_id) hears each device's turn. Returns (results, halted_text or None);
    `results`, when given, is the list they go in, which holds those finished so far if Ctrl-C stops it."""
    results = [] if results is None else results
    for n, batch in enumerate(batches, 1):
        out = {}

        def one(dev_id, out=out):
            if on_start:
                on_start(dev_id)
            out[dev_id] = server.update(dev_id, keys[dev_id], progress=progress, **kw)
        threads = [threading.Thread(target=one, args=(d,), daemon=True) for d in batch]  # Ctrl-C ends them
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except KeyboardInterrupt:
            results += [out[d] for d in batch if d in out]  # what finished before it, for the report
            raise
        batch_results = [out[d] for d in batch]
        results += batch_results
        failed = [r for r in batch_results if not r.ok]
        if len(failed) > max_failures:
            left = sum(len(b) for b in batches[n:])
            return results, (f"stopped after stage {n} of {len(batches)}: {len(failed)} of {len(batch)} failed "
                             f"(more than {max_failures}); {left} device(s) not offered the update")
    return results, None


def status(host, port, dev_ids, login=None):
    """{id: {"state", "fw", "ota": {...}}} from the retained status and ota/state."""
    topics = [protocol.topic(d, k) for d in dev_ids for k in (protocol.STATUS, OTA_STATE)]
    found = {d: {"state": "?", "fw": "", "ota": {}} for d in dev_ids}
    with Listener(host, port, topics, name="ota-status", login=login) as lis:
        lis.wait_subscribed()
        deadline = time.monotonic() + STATUS_WAIT_S
        while time.monotonic() < deadline:
            msg = lis.get(min(0.3, deadline - time.monotonic()))
            if msg is None:
                break
            parsed = protocol.parse(msg[0])
            if parsed is None or parsed[0] not in found:
                continue
            body, kind = json_object(msg[1]) or {}, "/".join(parsed[1])
            if kind == protocol.STATUS:
                found[parsed[0]]["state"] = body.get("state", "?")
                found[parsed[0]]["fw"] = body.get("fw", "")
            else:
                found[parsed[0]]["ota"] = body
    return found


def status_lines(found):
    rows = [("DEVICE", "STATE", "FIRMWARE", "LAST UPDATE")]
    for dev_id in sorted(found):
        d = found[dev_id]
        o = d["ota"]
        last = "-" if not o else f"{o.get('state', '?')}" + (f": {o['text']}" if o.get("text") else "")
        if o.get("state") == "fetching":
            last += f" {o.get('off', 0)}/{o.get('size', '?')} bytes of {o.get('ver')}"
        rows.append((dev_id, d["state"], d["fw"] or "-", last))
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows]


def report_lines(results, halted, skipped=(), version=""):
    lines = [f"skip {d}: already running {version}" for d in skipped]
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        lines.append(f"{mark} {r.device}: {r.before or '?'} -> {r.after or '?'} in {r.seconds:.1f} s: {r.text}")
    lines.append("wisp: " + summary(results, halted, skipped, version))
    return lines


def interrupted_line(ids, started, results):
    """What Ctrl-C of a rollout left: the devices it stopped following, and those never offered the update."""
    done = {r.device for r in results}
    busy = [d for d in started if d not in done]
    return (f"wisp: interrupted with {', '.join(busy) or 'no device'} mid-update (a fetch resumes where it "
            f"stopped at the next offer; a switch goes on by itself), {len(ids) - len(started)} device(s) not "
            f"offered; run the same command again to go on")


def summary(results, halted, skipped=(), version=""):
    # every device skipped: all done, or changed code built under the version they run, which none would take
    nothing = " (changed code needs a new --version to reach them)" if skipped and not results else ""
    return (f"{sum(r.ok for r in results)} of {len(results)} device(s) updated"
            + (f"; {len(skipped)} already ran {version}{nothing}" if skipped else "")
            + (f"; {halted}" if halted else ""))


def health_seconds(text):
    """--health-s: whole seconds the device takes (its refusal would lump it in with sizes and file count)."""
    lo, hi = otabundle.HEALTH_RANGE_S
    if not re.fullmatch(r"[0-9]+", text.strip()) or not lo <= int(text) <= hi:
        raise argparse.ArgumentTypeError(f"must be whole seconds {lo}-{hi}, not {text!r}")
    return int(text)


def run(args, host, port, login, key_of, out=print):
    """The `wisp ota` command. key_of(dev_id) -> key bytes or None. Returns the exit status."""
    if args.status:
        ids = args.devices or sorted(_online(host, port, login, everyone=True))
        for line in status_lines(status(host, port, ids, login)):
            out(line)
        return 0
    running = _online(host, port, login) if args.all else {}
    ids = sorted(running) if args.all else args.devices
    if not ids:
        raise OtaError("no device to update: name one (wisp ota dev1) or pass --all" +
                       (" (none is online)" if args.all else ""))
    version = args.version or otabundle.checkout_version()
    skipped = already(ids, running, version)
    ids = [d for d in ids if d not in skipped]
    keys = {d: key_of(d) for d in ids}
    missing = [d for d, k in keys.items() if k is None]
    if missing:
        raise OtaError(f"no signing key for {', '.join(missing)}: updates are signed with the device's key "
                       f"(`wisp provision <id>`, or --fleet DIR)")
    if ids and not args.all:  # a named device that is not online is waited for: say so, not 300 s of silence
        for d, info in sorted(status(host, port, ids, login).items()):
            if info["state"] != "online":
                out(f"wisp: {d} is {'offline' if info['state'] == 'offline' else 'not known to the broker'}: "
                    f"its update starts when it comes online (waiting up to {args.timeout:g} s)")
    results, halted, started = [], None, []
    if ids:
        bundle = otabundle.build(version)
        out(f"wisp: bundle {bundle.version}: {len(bundle.files)} files, {bundle.size} bytes")
        batches = stages(ids, args.canary, args.then) if args.all else [ids]
        server = Server(host, port, bundle, login)
        try:
            results, halted = rollout(server, keys, batches, args.max_failures,
                                      progress=out if args.verbose else None, on_start=started.append,
                                      results=results, force=args.force, health_s=args.health_s,
                                      timeout_s=args.timeout)
        except KeyboardInterrupt:
            for line in report_lines(results, None, skipped, version)[:-1]:
                out(line)
            out(interrupted_line(ids, started, results))
            raise
        finally:
            server.close()
    for line in report_lines(results, halted, skipped, version):
        out(line)
    return 0 if all(r.ok for r in results) and not halted else 1


def _online(host, port, login, everyone=False):
    """{device id: the firmware it runs} of the devices online (everyone: all the broker knows)."""
    from tools import devices
    found = devices.collect(host, port, login)
    return {d: info["fw"] for d, info in found.items() if everyone or info["state"] == "online"}


def stage_size(text):
    """A --then: a count of devices (1 or more) or a percentage of all (above 0, at most 100)."""
    number = text[:-1] if text.endswith("%") else text
    try:
        value = float(number) if text.endswith("%") else int(number)
    except ValueError:
        value = None
    if value is None or not (0 < value <= 100 if text.endswith("%") else value >= 1):
        raise argparse.ArgumentTypeError(f"must be a count of devices (e.g. 5) or a percentage (e.g. 25%), "
                                         f"not {text!r}")
    return text


def add_parser(sub, fleet_help):
    o = sub.add_parser("ota", help="update devices over the air: signed, resumable, rolled back if unhealthy",
                       description="Build an update bundle (wisp/ as .mpy) from this checkout, send it to each device "
                                   "signed with its key, switch and confirm; a version that does not connect in time "
                                   "is rolled back by the device itself. See docs/ota.md.")
    o.add_argument("devices", nargs="*", help="device ids (or --all)")
    o.add_argument("--all", action="store_true", help="every device online, in stages (--canary, --then)")
    o.add_argument("--canary", type=int, default=1, help="devices updated first, alone (default 1)")
    o.add_argument("--then", type=stage_size, default="25%",
                   help="stage size after the canary: a count or a percentage (default 25%%)")
    o.add_argument("--max-failures", type=int, default=0,
                   help="failures a stage may have before the rollout stops (default 0)")
    o.add_argument("--status", action="store_true", help="show what each device runs and its last update")
    o.add_argument("--version", help="version stamped into the bundle (default: VERSION of this checkout)")
    o.add_argument("--force", action="store_true", help="allow a version older than the one running")
    o.add_argument("--health-s", type=health_seconds, default=otabundle.HEALTH_S,
                   help="seconds the new version has to connect after its reboot (default 60, at most 600)")
    from tools.cli import positive_seconds
    o.add_argument("--timeout", type=positive_seconds, default=UPDATE_TIMEOUT_S,
                   help="seconds per device (default 300)")
    o.add_argument("--verbose", "-v", action="store_true", help="print progress")
    o.add_argument("--broker", help="host:port (as for ask)")
    o.add_argument("--fleet", nargs="?", const="", metavar="DIR", help=fleet_help + ", and the devices' signing keys")
    return o
