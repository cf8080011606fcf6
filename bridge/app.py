"""Wiring of the bridge service: one HTTP session, the router, the cost store, the MQTT link, the manifest
cache, the optional HTTP server (/v1, REST API, dashboard, /metrics) with its fleet view, and a dispatcher that
turns each `llm/req` into a bounded number of concurrent handler tasks.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable

from bridge import fastjson, ha, protocol
from bridge.config import BridgeConfig
from bridge.cost import open_store
from bridge.fleet import FLEET_TOPICS, Fleet
from bridge.httpclient import HttpClient
from bridge.manifests import ManifestCache
from bridge.metrics import Metrics
from bridge.mqtt_link import MqttLink
from bridge.providers import provider_factory
from bridge.reasons import Failure, Reason
from bridge.rounds.dedupe import Dedupe
from bridge.rounds.handler import HandlerContext, handle_llm_request, refuse_llm_request
from bridge.routing.router import Router
from bridge.updates import Updates
from bridge.web.events import EventHub
from bridge.web.server import make_app, start

log = logging.getLogger("wisp.bridge")

MAX_IN_FLIGHT = 64  # concurrent requests per bridge; beyond it requests wait in a queue
MAX_QUEUED = 1024  # requests waiting for a slot (FIFO); beyond it they are refused as busy
SHUTDOWN_GRACE_S = 5.0  # in-flight requests get this long to finish before they are answered "shutting down"


def _updates(cfg: BridgeConfig) -> Updates:
    """Over-the-air rollouts from the API use `wisp ota`'s MQTT client, which speaks plain MQTT only."""
    if cfg.broker_tls:
        return Updates(None, None, "updates from the API need a plain broker listener; run `wisp ota` instead")
    login = (cfg.broker_user, cfg.broker_password or "") if cfg.broker_user else None
    return Updates((cfg.broker_host, cfg.broker_port, login), cfg.signing_keys)


class Bridge:
    def __init__(self, config: BridgeConfig, max_in_flight: int = MAX_IN_FLIGHT):
        self.config = config
        self.max_in_flight = max_in_flight
        self.manifests = ManifestCache()
        self.ctx: HandlerContext | None = None
        self.router: Router | None = None
        self.http_url: str | None = None  # base URL of the /v1 endpoint once it listens
        self.events = EventHub()
        self.metrics = Metrics()
        self.fleet: Fleet | None = None  # the live device view, kept only while the HTTP server runs
        self._tasks: set[asyncio.Task] = set()
        self._queue: deque[tuple[str, bytes, float]] = deque()  # (device, payload, received) waiting for a slot
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None  # set by run()
        self._link: MqttLink | None = None  # the subscribed link, set by run()
        self._presence_topic = protocol.bridge_status(config.name)
        self._instance = uuid.uuid4().hex[:12]  # tells this process from another bridge of the same name
        self._warned_name = False
        self._warned_bridges: set[str] = set()  # instances of other bridges whose settings were found at odds
        # which devices this bridge signs for, as its presence tells other bridges (ids only, never a key)
        self._keys_id = (hashlib.sha256(",".join(sorted(config.signing_keys)).encode()).hexdigest()[:12]
                         if config.signing_keys else None)
        # Home Assistant's birth topic, when the bridge announces itself there (None: discovery off)
        self._ha_status = ha.status_topic(config.ha.prefix) if config.ha.discovery else None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until `stop` is set. on_ready() is called once the broker granted the first subscriptions."""
        loop = self._loop = asyncio.get_running_loop()
        cfg = self.config
        serve_http = bool(cfg.http.enabled and cfg.http.token)
        broker = dict(user=cfg.broker_user, password=cfg.broker_password, tls=cfg.broker_tls, ca=cfg.broker_ca)
        link = self._link = MqttLink(cfg.broker_host, cfg.broker_port, loop, self._dispatch, shared=cfg.shared,
                                     extra_topics=(*(FLEET_TOPICS if serve_http else ()), protocol.EVERY_BRIDGE,
                                                   *((self._ha_status,) if self._ha_status else ())),
                                     presence=self._presence(), **broker)
        # the answers go out on a second connection that reads its acknowledgements in batches (mqtt_link.py)
        answers = MqttLink(cfg.broker_host, cfg.broker_port, loop, self._dispatch, publish_only=True, **broker)
        if serve_http:
            self.fleet = Fleet(link.publish, self.events.publish, cfg.signing_keys, link.subscribed.is_set)
        costs = await open_store(cfg.cost, f"{socket.gethostname()}:{os.getpid()}", self.metrics.cost_recorded)
        http_runner = None
        try:
            async with HttpClient() as http:  # no cap on connections: each tier's max_concurrency bounds them
                self.router = Router(cfg, provider_factory(http), on_attempt=self.metrics.attempt_ended)
                self.metrics.watch(self.router, self.fleet, self.events, link.subscribed.is_set)
                # the dashboard's tier events are read only through the HTTP server: none without it
                self.ctx = HandlerContext(cfg, self.manifests, answers.publish, self.router, costs,
                                          Dedupe(shared=costs),
                                          on_outcome=[self.metrics.round_finished,
                                                      *([self._tier_event] if serve_http else [])])
                if serve_http:
                    app = make_app(token=cfg.http.token, router=self.router, costs=costs, fleet=self.fleet,
                                   hub=self.events, metrics=self.metrics, updates=_updates(cfg))
                    http_runner, base_url = await start(app, cfg.http.host, cfg.http.port)
                    self.http_url = base_url + "/v1"
                    log.info("dashboard and REST API on %s/ (token: WISP_API_TOKEN)", base_url)
                elif cfg.http.enabled:
                    log.info("HTTP server (/v1, REST API, dashboard) off: set WISP_API_TOKEN (or [http] token)")
                link.start()
                answers.start()
                self._announce_to_ha()
                ready = asyncio.create_task(self._announce_ready((link, answers), on_ready))
                try:
                    await stop.wait()
                finally:
                    ready.cancel()
                    await self._drain()
                    if http_runner:
                        await http_runner.cleanup()
                    await asyncio.gather(link.aclose(), answers.aclose())
        finally:
            await costs.aclose()
        log.info("bridge stopped")

    async def _announce_ready(self, links: tuple[MqttLink, ...], on_ready) -> None:
        for link in links:  # subscribed, and the answers' link connected
            await link.subscribed.wait()
        log.info("bridge ready")
        if on_ready:
            on_ready()

    def _presence(self) -> tuple[str, bytes, bytes]:
        """(topic, online, offline) of this bridge (docs/protocol.md "Bridge presence")."""
        me = {"v": protocol.VERSION, "name": self.config.name, "instance": self._instance}
        online = {**me, "state": "online", "tiers": sorted(self.config.tiers), "since": int(time.time()),
                  "shared": self.config.shared, "keys": self._keys_id}  # what other bridges compare with theirs
        return self._presence_topic, json.dumps(online).encode(), json.dumps({**me, "state": "offline"}).encode()

    def _announce_to_ha(self) -> None:
        """The bridge's binary sensor for Home Assistant (bridge/ha.py), retained; queued until connected."""
        if self._ha_status:
            topic, payload = ha.discovery(self.config.name, self.config.ha.prefix)
            self._link.publish(topic, payload, 1, retain=True)

    def _presence_seen(self, topic: str, name: str, payload: bytes) -> None:
        """A bridge's presence as the broker has it. On our own topic: another bridge of the same name that stopped
        (or died) marked it offline while we run, so we say online again; one that runs is worth a warning. Any
        other bridge that runs is checked for settings that make the two answer a request twice, or not at all."""
        try:
            body = fastjson.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("instance") == self._instance or self._closing:
            return
        if body.get("state") == "online":
            self._compare(name, body)
        if topic != self._presence_topic:
            return
        if body.get("state") == "offline":
            self._link.publish(self._presence_topic, self._link.presence[1], 1, retain=True)
        elif body.get("state") == "online" and not self._warned_name:
            self._warned_name = True
            log.warning("another bridge is also named %r: %s shows online while either runs; give each its own "
                        "name (WISP_BRIDGE_NAME or [broker] name)", self.config.name, self._presence_topic)

    def _compare(self, name: str, body: dict) -> None:
        """Log, once per instance, what in another running bridge's settings breaks the requests of this broker.
        Bridges split llm/req only when every one takes it through the shared subscription; a plain one gets each
        request besides, and answers it again (a second model call, paid). A device whose key a bridge lacks is
        not served there, and a provisioned device refuses an unsigned answer: it waits out its round."""
        instance = str(body.get("instance"))
        if instance in self._warned_bridges:
            return
        other, problems = f"bridge {name!r}", []
        if "shared" in body and not (body["shared"] is True and self.config.shared):
            if body["shared"] is not True and not self.config.shared:
                problems.append(f"this bridge and {other} both take every request (plain subscriptions): each is "
                                "answered, and paid for, twice; on a broker without shared subscriptions run one "
                                "bridge only")
            else:
                plain, sharing = (other, "this one") if self.config.shared else ("this bridge", other)
                problems.append(f"{plain} takes every request (a plain subscription: WISP_SHARED=0 or [broker] "
                                f"shared = false) while {sharing} shares them: each request it takes is answered, "
                                "and paid for, twice; share on every bridge of one broker")
        if "keys" in body and body["keys"] != self._keys_id:
            problems.append(f"{other} holds signing keys for other devices than this one (the fleet's "
                            "secrets.json on one, not on the other, or an older copy): a request that reaches the "
                            "bridge without its device's key is ignored or its answer refused, and the device waits "
                            "out its round; give every bridge of one broker the same keys ([signing] keys or "
                            "WISP_DEVICE_KEYS)")
        if problems:
            self._warned_bridges.add(instance)
            for problem in problems:
                log.warning("%s", problem)

    def _dispatch(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Runs on the loop for every MQTT message (scheduled there by MqttLink). retained: the broker replays it
        because we subscribed (manifests, statuses and states are retained by design; requests never are)."""
        bridge = protocol.parse_bridge(topic)
        if bridge is not None:
            self._presence_seen(topic, bridge, payload)
            return
        if topic == self._ha_status:
            if payload.strip() == b"online" and not retained:  # Home Assistant (re)started: tell it again
                self._announce_to_ha()
            return
        parsed = protocol.parse(topic)
        if parsed is None:
            log.warning("ignored message on unexpected topic %r", topic)
            return
        device_id, rest = parsed
        kind = "/".join(rest)
        if self.config.signing_keys and device_id not in self.config.signing_keys:
            return  # a provisioned fleet is known: another id costs no cache, no tokens (docs/security.md)
        if kind == protocol.MANIFEST:
            self.manifests.update(device_id, payload)
            if self.fleet:
                self.fleet.handle(device_id, rest, payload, retained)
        elif kind == protocol.LLM_REQ:
            if retained or not payload:  # not a device asking now (docs/protocol.md, "Retained requests")
                if payload:
                    log.warning("device=%s retained llm/req ignored: the broker replays it at every subscribe, "
                                "so it would be answered (and paid for) again at every reconnect; clear it with "
                                "an empty retained message on %s", device_id, topic)
                return
            received = time.monotonic()
            if self._closing:
                refuse_llm_request(device_id, payload, self.ctx,
                                   Failure(Reason.SHUTTING_DOWN, "the bridge is shutting down; ask again"), received)
            elif len(self._tasks) < self.max_in_flight:
                self._start(device_id, payload, received)
            elif len(self._queue) < MAX_QUEUED:
                self._queue.append((device_id, payload, received))  # its budget counts from `received`
            else:
                refuse_llm_request(device_id, payload, self.ctx, Failure(
                    Reason.BUSY, f"bridge busy: {len(self._tasks)} requests in flight and {len(self._queue)} "
                    "waiting; ask again shortly"), received)
        elif not (self.fleet and self.fleet.handle(device_id, rest, payload, retained)):
            log.warning("ignored message on unexpected topic %r", topic)

    def _start(self, device_id: str, payload: bytes, received: float) -> None:
        task = self._loop.create_task(handle_llm_request(device_id, payload, self.ctx, received))
        self._tasks.add(task)  # a strong reference, or the task may be garbage-collected mid-flight
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        while self._queue and len(self._tasks) < self.max_in_flight and not self._closing:
            self._start(*self._queue.popleft())

    def _tier_event(self, outcome) -> None:
        event = outcome.event()
        if self.fleet:
            self.fleet.record(event)  # the device page's recent events show the round and its calls
        else:
            self.events.publish(event)

    async def _drain(self) -> None:
        self._closing = True
        while self._queue:
            device_id, payload, received = self._queue.popleft()
            refuse_llm_request(device_id, payload, self.ctx,
                               Failure(Reason.SHUTTING_DOWN, "the bridge is shutting down; ask again"), received)
        if not self._tasks:
            return
        log.info("waiting up to %.0f s for %d request(s) in flight", SHUTDOWN_GRACE_S, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()  # the handler still answers its request ("shutting down") before it ends
        await asyncio.gather(*pending, return_exceptions=True)


async def serve(config: BridgeConfig) -> None:
    """Run the bridge until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Bridge(config).run(stop)

