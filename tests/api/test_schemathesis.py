"""schemathesis against the bridge's own OpenAPI description (fetched from /api/openapi.json of a
running bridge with a simulated device on the real firmware): generated valid and invalid requests
for every operation never get a 5xx, and answers use the statuses the description declares."""
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.bridge.apistack import AUTH, ApiStack

DEV = "fuzz1"
EXAMPLES = 25  # per operation, generation mode and device choice; the whole file stays under a minute
CALL_TIMEOUT_S = 30  # a generated ask may wait for the device's whole LLM round
TOTAL_S = 60
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def stack(broker):
    s = ApiStack(broker, DEV)
    yield s
    s.close()


@pytest.fixture(scope="module")
def operations(stack):
    schema = schemathesis.openapi.from_url(stack.base + "/api/openapi.json")
    return [r.ok() for r in schema.get_all_operations()]


def fuzz(stack, op, mode, device):
    """EXAMPLES generated requests for one operation; returns how many were sent."""
    sent = []
    pinned = {"id": device} if device and "{id}" in op.path else None

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(op.as_strategy(generation_mode=mode, path_parameters=pinned))
    def one(case):
        response = case.call(base_url=stack.base, headers=AUTH, timeout=CALL_TIMEOUT_S)
        sent.append(response.status_code)
        case.validate_response(response, checks=[status_code_conformance])
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)

    one()
    return sent


def test_no_generated_request_gets_a_server_error(stack, operations):
    started, statuses = time.monotonic(), []
    assert len(operations) >= 12  # every REST route of bridge/web/routes.py is described
    for op in operations:
        for mode in MODES:
            for device in (None, DEV):  # random ids (mostly 404) and the real device
                if device and "{id}" not in op.path:
                    continue
                statuses += fuzz(stack, op, mode, device)
    assert all(s < 500 for s in statuses)
    assert {200, 400, 404} <= set(statuses)  # the fuzz reached handlers, not only the auth check
    assert len(statuses) > 100
    assert time.monotonic() - started < TOTAL_S
    # and the bridge still serves the device afterwards
    assert stack.call("GET", "/api/devices")[0] == 200
    assert stack.wait_online()["id"] == DEV
