"""GET /metrics, parsed with the Prometheus client library's own text parser: the families a dashboard or an
alert needs are there, and their values move when the simulated device asks through a (fake, priced) tier."""
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.bridge.apistack import ApiStack, porch_responder
from tests.bridge.harness import llm_req, manifest
from tests.fakes.openai_server import Reply
from tests.support import until

DEV = "met1"
FAMILIES = {
    "wisp_requests": "counter", "wisp_requests_replayed": "counter", "wisp_request_first_output_seconds": "histogram",
    "wisp_request_duration_seconds": "histogram", "wisp_tier_first_output_seconds": "histogram",
    "wisp_tier_attempts": "counter", "wisp_tokens": "counter", "wisp_cost_usd": "counter",
    "wisp_tier_breaker_state": "gauge", "wisp_tier_in_flight": "gauge", "wisp_tier_error_rate": "gauge",
    "wisp_devices_online": "gauge", "wisp_devices_known": "gauge", "wisp_event_clients": "gauge",
    "wisp_events_dropped": "counter",
}


def responder(request):
    if "fail" in str(request["messages"][-1].get("content")):
        return Reply(status=500)
    return porch_responder(request)


@pytest.fixture(scope="module")
def api(broker):
    s = ApiStack(broker, DEV, responder)
    yield s
    s.close()


def scrape(api) -> dict:
    status, text = api.call("GET", "/metrics")
    assert status == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, sample_name, **labels) -> float:
    """Sum of the samples with that name whose labels include `labels` (0 when there are none yet)."""
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
    return sum(s.value for s in families[family].samples
               if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_need_the_token_and_are_prometheus_text(api):
    assert api.call("GET", "/metrics", headers={})[0] == 401
    families = scrape(api)
    assert {name: families[name].type for name in FAMILIES if name in families} == FAMILIES


def test_an_ask_moves_requests_latency_tokens_and_cost(api):
    before = scrape(api)
    status, reply = api.call("POST", f"/api/devices/{DEV}/ask", {"text": "light up the porch"})
    assert status == 200 and reply["ok"], reply
    after = scrape(api)
    ok = {"class": "interactive", "tier": "local", "outcome": "ok"}
    # two rounds: the tool call, then the answer after the device ran it
    assert value(after, "wisp_requests_total", **ok) - value(before, "wisp_requests_total", **ok) == 2
    for name, labels in [("wisp_request_duration_seconds_count", {"class": "interactive", "tier": "local"}),
                         ("wisp_request_first_output_seconds_count", {"class": "interactive"}),
                         ("wisp_tier_first_output_seconds_count", {"tier": "local"})]:
        assert value(after, name, **labels) - value(before, name, **labels) == 2, name
    assert value(after, "wisp_request_duration_seconds_sum", tier="local") > \
        value(before, "wisp_request_duration_seconds_sum", tier="local")
    assert value(after, "wisp_tier_attempts_total", tier="local", outcome="ok") - \
        value(before, "wisp_tier_attempts_total", tier="local", outcome="ok") == 2
    tokens_in, tokens_out = (value(after, "wisp_tokens_total", direction=d) - value(before, "wisp_tokens_total",
                                                                                   direction=d) for d in ("in", "out"))
    assert tokens_in > 0 and tokens_out > 0
    cost = value(after, "wisp_cost_usd_total", tier="local") - value(before, "wisp_cost_usd_total", tier="local")
    assert cost == pytest.approx((tokens_in * 2 + tokens_out * 10) / 1e6)  # the fake tier's prices


def test_a_failing_tier_shows_as_errors_and_error_rate(api):
    before = scrape(api)
    status, reply = api.call("POST", f"/api/devices/{DEV}/ask", {"text": "please fail"})
    assert status == 200 and not reply["ok"]
    after = scrape(api)
    assert value(after, "wisp_requests_total", outcome="error") - value(before, "wisp_requests_total",
                                                                         outcome="error") == 1
    assert value(after, "wisp_tier_attempts_total", tier="local", outcome="error") > \
        value(before, "wisp_tier_attempts_total", tier="local", outcome="error")
    assert value(after, "wisp_tier_error_rate", tier="local") > 0


def test_a_resend_answered_by_replay_is_counted_apart(api, probe):
    """A device's re-send of a round already answered gets the same messages again, with no model call: it is
    counted in wisp_requests_replayed_total, not once more in wisp_requests_total or the round latencies."""
    dev = "replay1"
    probe.publish(f"wisp/{dev}/manifest", manifest(dev), retain=True)
    try:
        until(lambda: api.bridge.bridge.manifests.get(dev), 5, "the bridge to hold the manifest")
        before, calls = scrape(api), len(api.fake.requests)
        for _ in range(2):  # the request, then the device's re-send of it
            probe.publish(f"wisp/{dev}/llm/req", llm_req("rp1"), qos=1)
            done = probe.wait_for(f"wisp/{dev}/llm/res", lambda m: m.get("id") == "rp1" and m.get("done"))
            assert "err" not in done, done
        after = scrape(api)
        _, seen = api.call("GET", f"/api/devices/{dev}")  # the dashboard's device page: the re-send marked
        assert [e["replayed"] for e in seen["recent"] if e["type"] == "tier"] == [False, True], seen["recent"]
    finally:
        probe.publish(f"wisp/{dev}/manifest", b"", retain=True)
    ok = {"class": "interactive", "tier": "local", "outcome": "ok"}
    assert value(after, "wisp_requests_total", **ok) - value(before, "wisp_requests_total", **ok) == 1
    assert len(api.fake.requests) == calls + 1  # one model call: the re-send was replayed
    assert value(after, "wisp_requests_replayed_total", **{"class": "interactive"}) - \
        value(before, "wisp_requests_replayed_total", **{"class": "interactive"}) == 1
    for name in ("wisp_request_duration_seconds_count", "wisp_request_first_output_seconds_count"):
        assert value(after, name, **{"class": "interactive"}) - value(before, name, **{"class": "interactive"}) \
            == 1, name


def test_breaker_state_and_devices_online_are_live(api):
    families = scrape(api)
    assert value(families, "wisp_tier_breaker_state", tier="local", state="closed") == 1
    assert value(families, "wisp_tier_breaker_state", tier="local", state="open") == 0
    online = value(families, "wisp_devices_online")
    assert online >= 1 and value(families, "wisp_devices_known") >= online
    api.device.terminate()  # the broker publishes its last will: status offline
    api.device.wait(5)
    deadline = time.monotonic() + 5
    while value(scrape(api), "wisp_devices_online") != online - 1:
        assert time.monotonic() < deadline, "devices_online did not drop after the device went away"
        time.sleep(0.1)
