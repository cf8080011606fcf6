"""Prometheus metrics of one bridge (text exposition at GET /metrics), and the tier-decision events of device
rounds: a round is timed from its `llm/req` arriving to the first and the last (`done`) `llm/res` published.

Counters and histograms are fed as things happen (rounds, tier attempts, cost records); live state (breakers,
in-flight, devices online, event clients) is read from its owners at scrape time.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from bridge.config import REQUEST_CLASSES
from bridge.cost import CostStore
from bridge.request import read
from bridge.stats import TierStats

# Seconds: from a LAN tier (a few ms) and a fast premium tier (~0.1 s) to a round that uses its whole 30 s budget.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60)
ROUNDS_TRACKED_MAX = 4096  # rounds being timed at once; the oldest is forgotten beyond it (never answered)
BREAKER_STATES = ("closed", "half-open", "open")
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

prometheus_client.disable_created_metrics()  # *_created series only add noise to a scrape


class Metrics:
    def __init__(self, on_round: Callable[[dict], None] = lambda e: None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("wisp_requests", "Device LLM rounds answered, by request class, tier and outcome",
                                ["class", "tier", "outcome"], registry=r)
        self.first_output = Histogram("wisp_request_first_output_seconds",
                                      "Device round: llm/req received to first llm/res published",
                                      ["class"], buckets=LATENCY_BUCKETS, registry=r)
        self.duration = Histogram("wisp_request_duration_seconds",
                                  "Device round: llm/req received to the done llm/res published",
                                  ["class", "tier"], buckets=LATENCY_BUCKETS, registry=r)
        self.tier_first_output = Histogram("wisp_tier_first_output_seconds",
                                           "Tier attempt: request sent to first text delta or complete tool call "
                                           "(device rounds and /v1 alike)", ["tier"], buckets=LATENCY_BUCKETS,
                                           registry=r)
        self.tier_attempts = Counter("wisp_tier_attempts", "Tier attempts that finished, by outcome "
                                     "(cancelled hedges are not counted)", ["tier", "outcome"], registry=r)
        self.tokens = Counter("wisp_tokens", "Tokens accounted, by tier and direction (in, out)",
                              ["tier", "direction"], registry=r)
        self.cost = Counter("wisp_cost_usd", "Money spent on tiers, USD", ["tier"], registry=r)
        self._on_round = on_round
        self._rounds: OrderedDict[tuple, list] = OrderedDict()  # (device, id, round) -> [t0, class, first]

    def watch(self, router=None, fleet=None, hub=None) -> None:
        """Live state read at every scrape; tier stats of `router` are replaced by ones that feed histograms."""
        if router is not None:
            for name in router.stats:
                router.stats[name] = MeteredStats(name, self)
        self.registry.register(_LiveState(router, fleet, hub))

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)

    # ---- device rounds ------------------------------------------------------------------------------------
    def round_started(self, device_id: str, payload: bytes) -> None:
        raw, req_id, round_, _ = read(payload)
        if req_id is None:
            return  # never answered, so never timed
        cls = raw.get("class", "interactive") if isinstance(raw, dict) else "invalid"
        key = (device_id, req_id, round_)
        if key not in self._rounds:  # a re-send while the first is running keeps the first start time
            self._rounds[key] = [time.monotonic(), cls if cls in REQUEST_CLASSES else "invalid", False]
            if len(self._rounds) > ROUNDS_TRACKED_MAX:
                self._rounds.popitem(last=False)

    def published(self, topic: str, msg) -> None:
        """Sees everything the bridge publishes; times llm/res messages of rounds it saw start."""
        if not (topic.endswith("/llm/res") and isinstance(msg, dict)):
            return
        device_id = topic.split("/")[1]
        key = (device_id, msg.get("id"), msg.get("round"))
        rec = self._rounds.get(key)
        if rec is None:
            return
        t0, cls, first_seen = rec
        elapsed = time.monotonic() - t0
        if not first_seen:
            rec[2] = True
            self.first_output.labels(cls).observe(elapsed)
        if not msg.get("done"):
            return
        del self._rounds[key]
        tier = msg.get("tier") or "none"
        outcome = "error" if msg.get("err") else "ok"
        self.requests.labels(cls, tier, outcome).inc()
        self.duration.labels(cls, tier).observe(elapsed)
        usage = msg.get("usage") if isinstance(msg.get("usage"), dict) else {}
        self._on_round({"type": "tier", "device": device_id, "id": msg.get("id"), "round": msg.get("round"),
                        "class": cls, "tier": msg.get("tier"), "ok": outcome == "ok", "err": msg.get("err"),
                        "ms": round(elapsed * 1000, 1), "tokens_in": usage.get("in"),
                        "tokens_out": usage.get("out"), "ts": time.time()})

    def cost_recorded(self, tier: str, tokens_in: int, tokens_out: int, usd: float) -> None:
        self.tokens.labels(tier, "in").inc(tokens_in)
        self.tokens.labels(tier, "out").inc(tokens_out)
        self.cost.labels(tier).inc(usd)


class MeteredStats(TierStats):
    """The router's per-tier statistics, also feeding the Prometheus histograms and counters."""

    def __init__(self, tier: str, metrics: Metrics):
        super().__init__()
        self._tier, self._m = tier, metrics

    def first_output(self, ms: float) -> None:
        super().first_output(ms)
        self._m.tier_first_output.labels(self._tier).observe(ms / 1000)

    def finished(self, tokens: int, seconds: float) -> None:
        super().finished(tokens, seconds)
        self._m.tier_attempts.labels(self._tier, "ok").inc()

    def failed(self) -> None:
        super().failed()
        self._m.tier_attempts.labels(self._tier, "error").inc()


class MeteredCostStore(CostStore):
    """The cost store, also counting tokens and money per tier for /metrics."""

    def __init__(self, cfg, metrics: Metrics):
        super().__init__(cfg)
        self._m = metrics

    def record(self, device, tier, req_id, tokens_in, tokens_out, estimated=False) -> float:
        usd = super().record(device, tier, req_id, tokens_in, tokens_out, estimated)
        self._m.cost_recorded(tier.name, tokens_in, tokens_out, usd)
        return usd


class _LiveState:
    """A custom collector: values that belong to other objects, read when Prometheus scrapes."""

    def __init__(self, router, fleet, hub):
        self.router, self.fleet, self.hub = router, fleet, hub

    def collect(self):
        if self.router is not None:
            breaker = GaugeMetricFamily("wisp_tier_breaker_state", "Circuit breaker state per tier (1 = current)",
                                        labels=["tier", "state"])
            in_flight = GaugeMetricFamily("wisp_tier_in_flight", "Attempts running on the tier now", labels=["tier"])
            err_rate = GaugeMetricFamily("wisp_tier_error_rate", "Failed share of the tier's last 256 attempts",
                                         labels=["tier"])
            for name, b in self.router.breakers.items():
                for state in BREAKER_STATES:
                    breaker.add_metric([name, state], 1.0 if b.state == state else 0.0)
                in_flight.add_metric([name], self.router.in_flight[name])
                err_rate.add_metric([name], self.router.stats[name].error_rate)
            yield from (breaker, in_flight, err_rate)
        if self.fleet is not None:
            yield GaugeMetricFamily("wisp_devices_online", "Devices whose retained status says online",
                                    value=self.fleet.online_count)
            yield GaugeMetricFamily("wisp_devices_known", "Devices this bridge has heard of",
                                    value=len(self.fleet.devices))
        if self.hub is not None:
            yield GaugeMetricFamily("wisp_event_clients", "Connected /api/events WebSocket clients",
                                    value=len(self.hub.clients))
            yield CounterMetricFamily("wisp_events_dropped", "Events dropped for slow /api/events clients",
                                      value=self.hub.dropped_total)
