"""A live view of the devices, built from what they publish (status, manifest, pin states, events, asks,
replies, command results), and the request/response helpers the REST API uses: ask and cmd correlated by id.

Every bridge subscribes to these topics plainly (only llm/req is shared), so each one has the whole picture.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge import fastjson, protocol
from bridge.signing import sign_message

log = logging.getLogger("wisp.bridge.fleet")

READ_PREFIX = "read"  # cmd ids of the dashboard's own listings (schedules, routines, memory)
EVENTS_KEPT = 50  # recent device events, asks and replies kept per device for the dashboard
MAX_WAITING = 256  # API requests waiting for a device at once; more are refused
MAX_STATE_BYTES = 1024  # a state payload longer than this is kept as truncated text
MAX_TEXT_CHARS = 2000  # texts of events, asks and replies kept and forwarded to the dashboard
_KINDS = (protocol.STATUS, protocol.MANIFEST, protocol.STATE, protocol.EVENT, protocol.ASK, protocol.REPLY,
          protocol.CMD_RES, protocol.OTA_STATE)
_NEWS = (protocol.EVENT, protocol.ASK, protocol.REPLY, protocol.CMD_RES)  # never retained by devices or the CLI
FLEET_TOPICS = tuple(protocol.every_device(k) for k in (protocol.STATUS, protocol.STATE + "/#", protocol.EVENT,
                                                       protocol.ASK, protocol.REPLY, protocol.CMD_RES,
                                                       protocol.OTA_STATE))
OTA_FIELDS = ("state", "text", "ver", "off", "size", "fw")  # of a device's ota/state, as the API shows it


class DeviceOffline(Exception):
    """The device is known and its retained status says offline."""


class WentOffline(DeviceOffline):
    """The device went offline (its last will, a reboot) while a request waited for its answer."""


class UnknownDevice(Exception):
    """Nothing was ever published for this id."""


class NoBroker(Exception):
    """The bridge's link to the broker is down: nothing can reach a device now."""


class PinRefused(Exception):
    """The device refused the signed command a pin change became (its policy, a confirm pin)."""


def _pin_call(name: str, value: str) -> tuple[str, dict]:
    """The tool call that does what set/<name> <value> would (value as rest.set_pin checked it)."""
    if value in ("ON", "OFF"):
        return "gpio_write", {"pin": name, "value": 1 if value == "ON" else 0}
    if value == "TOGGLE":
        return "gpio_toggle", {"pin": name}
    return "pwm_set", {"pin": name, "duty_percent": int(value)}


class TooBig(Exception):
    """The request as it would be published is over what the device reads in one message (it would drop it
    unread and answer without the request's id)."""


class TooBusy(Exception):
    """MAX_WAITING API requests already wait for devices."""


@dataclass
class Device:
    id: str
    status: dict = field(default_factory=dict)
    last_seen: float | None = None  # wall-clock time of the last message from the device
    manifest: dict | None = None
    states: dict[str, object] = field(default_factory=dict)  # pin or sensor name -> "ON"/"OFF", number or dict
    ota: dict | None = None  # its last over-the-air update state (docs/ota.md)
    recent: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))

    @property
    def online(self) -> bool:
        return self.status.get("state") == "online"

    def summary(self) -> dict:
        s = self.status
        return {"id": self.id, "online": self.online, "fw": s.get("fw"), "board": s.get("board"),
                "boots": s.get("boots"), "last_seen": self.last_seen,
                "pins": len(self.pins()), "manifest": self.manifest is not None, "ota": self.ota}

    def pins(self) -> list[dict]:
        """Named pins of the manifest with their last state, then sensors and other names that only publish state."""
        declared = (self.manifest or {}).get("pins") or {}
        out = [{"name": n, "mode": (p or {}).get("mode") if isinstance(p, dict) else None,
                "state": self.states.get(n)} for n, p in sorted(declared.items())]
        out += [{"name": n, "mode": "sensor", "state": v} for n, v in sorted(self.states.items()) if n not in declared]
        return out

    def detail(self) -> dict:
        return {**self.summary(), "status": self.status, "manifest": self.manifest, "pins": self.pins(),
                "recent": list(self.recent)}


class Fleet:
    """on_event(event: dict) receives every change as a dashboard event (bridge/web/events.py fans it out)."""

    def __init__(self, publish: Callable[..., None], on_event: Callable[[dict], None] = lambda e: None,
                 keys: dict[str, bytes] | None = None, connected: Callable[[], bool] = lambda: True):
        self._publish = publish
        # connected(): the link to the broker is up. While it is down a command would wait in the link's outbox,
        # its caller would time out, and the device would run it whenever the link came back.
        self._connected = connected
        self._on_event = on_event
        self._keys = keys or {}  # device id -> HMAC key: commands to provisioned devices are signed
        self.devices: dict[str, Device] = {}
        self._waiting: dict[tuple[str, str, str], asyncio.Future] = {}  # (device, "reply"|"cmd/res", id)
        self._state_waiters: dict[tuple[str, str], list[asyncio.Future]] = {}

    # ---- what devices publish ------------------------------------------------------------------------
    def handle(self, device_id: str, rest: list[str], payload: bytes, retained: bool = False) -> bool:
        """Take one message (topic already split as wisp/<device_id>/<rest...>); False if it is not ours.
        retained: replayed by the broker at subscribe; status, manifest, states and ota/state are kept that way,
        while an event, ask, reply or command result is news only when it happens."""
        kind = "/".join(rest[:2]) if rest[:1] in ([protocol.CMD], ["ota"]) else rest[0]
        if kind not in _KINDS:
            return False
        if len(rest) != (2 if kind in (protocol.STATE, protocol.CMD_RES, protocol.OTA_STATE) else 1):
            return kind == protocol.STATE  # state/<a>/<b> and the like: ours, but not a shape we know
        if retained and kind in _NEWS:
            log.info("device=%s retained %s ignored: a past message, replayed by the broker", device_id, kind)
            return True
        dev = self._device(device_id)
        if dev is None:
            return True
        now = time.time()
        if kind != protocol.ASK and not retained:  # an ask is someone else's; a retained one may be a week old
            dev.last_seen = now
        if kind == protocol.STATE:
            self._state(dev, rest[1], payload, now)
            return True
        msg = {} if kind == protocol.STATUS and not payload else _json(payload)  # empty: retained status cleared
        if kind == protocol.MANIFEST:
            dev.manifest = msg if isinstance(msg, dict) else None
            self._emit({"type": "manifest", "device": device_id, "ts": now})
            return True
        if not isinstance(msg, dict):
            log.info("device=%s %s is not a JSON object: ignored", device_id, kind)
            return True
        if kind == protocol.STATUS:
            dev.status = msg
            self._emit({"type": "status", "device": device_id, "online": dev.online, "fw": msg.get("fw"), "ts": now})
            if not dev.online:
                self._went_offline(device_id)
        elif kind == protocol.OTA_STATE:
            dev.ota = {k: (_text(msg[k]) if isinstance(msg[k], str) else msg[k]) for k in OTA_FIELDS
                       if k in msg and isinstance(msg[k], (str, int))}
            self._emit({"type": "ota", "device": device_id, **dev.ota, "ts": now})
        elif kind == protocol.EVENT:
            self._remember(dev, {"type": "event", "device": device_id, "kind": _text(msg.get("kind")),
                                 "text": _text(msg.get("text")), "ts": now})
        elif kind == protocol.ASK:
            self._remember(dev, {"type": "ask", "device": device_id, "id": _text(msg.get("id")),
                                 "text": _text(msg.get("text")), "ts": now})
        elif kind == protocol.REPLY:
            ev = {"type": "reply", "device": device_id, **_pick(msg, "ok", "path", "tier", "ms"),
                  "id": _text(msg.get("id")), "text": _text(msg.get("text")), "ts": now}
            self._remember(dev, ev)
            self._resolve(device_id, protocol.REPLY, msg)
        else:  # cmd/res
            if not _text(msg.get("id")).startswith(READ_PREFIX + "-"):  # the dashboard's own reads are no news
                self._emit({"type": "cmd_res", "device": device_id, **_pick(msg, "ok"), "id": _text(msg.get("id")),
                            "result": _text(msg.get("result")), "ts": now})
            self._resolve(device_id, protocol.CMD_RES, msg)
        return True

    def _device(self, device_id: str) -> Device | None:
        dev = self.devices.get(device_id)
        if dev is None:
            if len(self.devices) >= protocol.MAX_DEVICES:
                log.warning("fleet full (%d devices): ignoring %s", protocol.MAX_DEVICES, device_id)
                return None
            dev = self.devices[device_id] = Device(device_id)
        return dev

    def _state(self, dev: Device, name: str, payload: bytes, now: float) -> None:
        # "ON"/"OFF" stay text; numbers and sensor readings ({"t": 21.5, "h": 40}) become JSON values
        value = _json(payload) if len(payload) <= MAX_STATE_BYTES else None
        if isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
            value = payload[:MAX_STATE_BYTES].decode("utf-8", "replace")
        if not payload:  # retained state removed (pin left the config)
            dev.states.pop(name, None)
            value = None
        else:
            dev.states[name] = value
        self._emit({"type": "state", "device": dev.id, "name": name, "value": value, "ts": now})
        for fut in self._state_waiters.pop((dev.id, name), []):
            if not fut.done():
                fut.set_result(value)

    def record(self, event: dict) -> None:
        """An event the bridge made about a device (a tier decision): kept with its recent events."""
        dev = self.devices.get(event.get("device"))
        if dev is not None:
            self._remember(dev, event)
        else:
            self._emit(event)

    def _remember(self, dev: Device, event: dict) -> None:
        dev.recent.append(event)
        self._emit(event)

    def _emit(self, event: dict) -> None:
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not stop the fleet view
            log.exception("event listener failed")

    def _went_offline(self, device_id: str) -> None:
        """Its answers will not come (a reset loses the requests it held): those waiting for them stop now."""
        for key in [k for k in self._waiting if k[0] == device_id]:
            fut = self._waiting.pop(key)
            if not fut.done():
                fut.set_exception(WentOffline(device_id))

    def _resolve(self, device_id: str, answer_kind: str, msg: dict) -> None:
        """Hand an answer (reply, cmd/res) to the API request waiting for its id, if one is."""
        if not isinstance(msg.get("id"), str):
            return  # an id we never send (null, a number, an object): nobody waits for it
        fut = self._waiting.pop((device_id, answer_kind, msg["id"]), None)
        if fut and not fut.done():
            fut.set_result(msg)

    # ---- what the API asks of devices ------------------------------------------------------------------
    def broker_connected(self) -> bool:
        return bool(self._connected())

    def check_reachable(self, device_id: str) -> Device:
        if not self._connected():
            raise NoBroker()
        dev = self.devices.get(device_id)
        if dev is None or (not dev.status and dev.manifest is None):
            raise UnknownDevice(device_id)
        if not dev.online:
            raise DeviceOffline(device_id)
        return dev

    async def ask(self, device_id: str, text: str, timeout_s: float) -> dict:
        """Publish an ask and wait for its reply; asyncio.TimeoutError if none comes in time."""
        req_id = _new_id("ask")
        msg = {"v": 1, "id": req_id, "text": text}
        key = self._keys.get(device_id)
        if key:  # a signed-only device takes signed, fresh asks only; others ignore the signature
            msg["ts"] = int(time.time())
        return await self._request(device_id, protocol.ASK, protocol.REPLY, msg, timeout_s, key)

    async def cmd(self, device_id: str, tool: str, args: dict, timeout_s: float, read: bool = False) -> dict:
        """Run one tool on the device. read=True: a listing the dashboard refreshes, kept out of the events."""
        cmd_id = _new_id(READ_PREFIX if read else "cmd")
        msg = {"v": 1, "id": cmd_id, "tool": tool, "args": args}
        key = self._keys.get(device_id)
        if key:  # a provisioned device obeys only signed commands, fresh ones (docs/security.md)
            msg["ts"] = int(time.time())  # whole seconds: an ESP32's floats are single precision
        return await self._request(device_id, protocol.CMD, protocol.CMD_RES, msg, timeout_s, key)

    async def set_pin(self, device_id: str, name: str, value: str, timeout_s: float):
        """Publish set/<name> and wait for the next state/<name> the device publishes; returns that state."""
        self.check_reachable(device_id)
        self._check_capacity()
        fut = asyncio.get_running_loop().create_future()
        waiters = self._state_waiters.setdefault((device_id, name), [])
        waiters.append(fut)
        try:
            key = self._keys.get(device_id)
            if key:  # a signed-only device refuses set/ (docs/security.md): send it a signed command instead
                tool, args = _pin_call(name, value)
                res = await self.cmd(device_id, tool, args, timeout_s)
                if not res.get("ok"):
                    raise PinRefused(str(res.get("result")))
            else:
                self._publish(protocol.topic(device_id, protocol.SET, name), value.encode(), qos=1)
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._state_waiters.pop((device_id, name), None)

    async def _request(self, device_id: str, topic: str, answer: str, msg: dict, timeout_s: float,
                       signing_key: bytes | None = None) -> dict:
        self.check_reachable(device_id)
        self._check_capacity()
        payload = sign_message(signing_key, msg) if signing_key else fastjson.dumps(msg)  # what goes on the wire
        why = protocol.unread(payload)
        if why:
            raise TooBig(f"{topic}{' (signed)' if signing_key else ''} of {why}")
        key = (device_id, answer, msg["id"])
        fut = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            self._publish(protocol.topic(device_id, topic), payload, qos=1)
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._waiting.pop(key, None)

    def _check_capacity(self) -> None:
        if len(self._waiting) + sum(map(len, self._state_waiters.values())) >= MAX_WAITING:
            raise TooBusy(f"{MAX_WAITING} requests are already waiting for devices; try again shortly")

    @property
    def online_count(self) -> int:
        return sum(1 for d in self.devices.values() if d.online)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _json(payload: bytes):
    try:
        return fastjson.loads(payload)
    except ValueError:
        return None


def _pick(msg: dict, *keys: str) -> dict:
    return {k: _text(msg[k]) if isinstance(msg[k], str) else msg[k] for k in keys
            if k in msg and isinstance(msg[k], (str, int, float, bool, type(None)))}


def _text(v) -> str | None:
    """A device-supplied text, bounded; anything that is not a string is shown as its JSON."""
    if v is None or isinstance(v, str):
        return v if v is None else v[:MAX_TEXT_CHARS]
    return json.dumps(v, default=str)[:MAX_TEXT_CHARS]
