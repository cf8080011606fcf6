"""Fixtures every test directory can use: the run's real mosquitto and an MQTT probe."""
import pytest

from tests.support import Probe, session_broker


@pytest.fixture(scope="session")
def broker():
    return session_broker()


@pytest.fixture
def probe(broker):
    p = Probe(broker.host, broker.port)
    yield p
    p.close()
