"""Prometheus metrics of one bridge (text exposition at GET /metrics). Counters and histograms are fed by what
the bridge reports as it happens: each device round's Outcome, each tier attempt's report (the router's
on_attempt hook) and each cost record (the cost store's on_record hook). Live state (breakers, in-flight,
devices online, event clients) is read from its owners at scrape time.
"""
from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from bridge.rounds.outcome import Outcome
from bridge.routing.router import AttemptReport, Verdict

# Seconds: from a LAN tier (a few ms) and a fast premium tier (~0.1 s) to a round that uses its whole 30 s budget.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60)
BREAKER_STATES = ("closed", "half-open", "open")
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

prometheus_client.disable_created_metrics()  # *_created series only add noise to a scrape


class _Children:
    """metric.labels(*values), remembered: prometheus_client takes a lock and rebuilds the label key on every
    call, and each device round feeds eight labelled series."""

    def __init__(self, metric) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], object] = {}

    def __call__(self, *values: str):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("wisp_requests", "Device LLM rounds answered, by request class, tier and outcome",
                                ["class", "tier", "outcome"], registry=r)
        self.replayed = Counter("wisp_requests_replayed", "Device re-sends answered again with an earlier answer, "
                                "without a model call (not counted in wisp_requests)", ["class"], registry=r)
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
        self._requests, self._replayed, self._first_output, self._duration = (_Children(m) for m in (
            self.requests, self.replayed, self.first_output, self.duration))
        self._tier_first_output, self._tier_attempts, self._tokens, self._cost = (_Children(m) for m in (
            self.tier_first_output, self.tier_attempts, self.tokens, self.cost))

    def watch(self, router=None, fleet=None, hub=None, broker=None) -> None:
        """Live state of these objects, read at every scrape. broker(): the link to the broker is up."""
        self.registry.register(_LiveState(router, fleet, hub, broker))

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)

    def round_finished(self, outcome: Outcome) -> None:
        """A device round answered (or refused): timed from its llm/req's arrival. A re-send answered by replay
        is no new round: counted apart, and kept out of the latencies (it takes no model call)."""
        if outcome.replayed:
            self._replayed(outcome.req_class).inc()
            return
        tier = outcome.tier or "none"
        if outcome.first_output_s is not None:
            self._first_output(outcome.req_class).observe(outcome.first_output_s)
        self._requests(outcome.req_class, tier, "ok" if outcome.ok else "error").inc()
        self._duration(outcome.req_class, tier).observe(outcome.total_s)

    def attempt_ended(self, report: AttemptReport) -> None:
        if report.first_output_ms is not None:
            self._tier_first_output(report.tier).observe(report.first_output_ms / 1000)
        if report.verdict is not Verdict.ABANDONED:
            self._tier_attempts(report.tier, report.verdict.value).inc()

    def cost_recorded(self, tier: str, tokens_in: int, tokens_out: int, usd: float) -> None:
        self._tokens(tier, "in").inc(tokens_in)
        self._tokens(tier, "out").inc(tokens_out)
        self._cost(tier).inc(usd)


class _LiveState:
    """A custom collector: values that belong to other objects, read when Prometheus scrapes."""

    def __init__(self, router, fleet, hub, broker):
        self.router, self.fleet, self.hub, self.broker = router, fleet, hub, broker

    def collect(self):
        if self.broker is not None:  # without its broker a bridge answers no device, whatever else reads well
            yield GaugeMetricFamily("wisp_broker_connected", "1 while the bridge is connected and subscribed to "
                                    "its broker", value=1.0 if self.broker() else 0.0)
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
