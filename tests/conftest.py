"""Fixtures every test directory can use: the run's real mosquitto, one of a test's own, and an MQTT probe."""
import signal

import pytest

from tests.support import Probe, session_broker
from tools import broker as brokers

# Tests press Ctrl-C on `wisp run`, `wisp sim` and devices (SIGINT). A shell that starts a command in the
# background without job control (`cmd &` in a script, as some CI runners do) leaves SIGINT ignored, every
# child inherits that, and those programs would never see the Ctrl-C: give the children the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def broker():
    return session_broker()


@pytest.fixture
def own_broker(tmp_path):
    """A mosquitto for this test alone: what it leaves retained (common ids such as dev1, junk on purpose)
    reaches no other test's `wisp devices`."""
    b = brokers.start_mosquitto(tmp_path / "mosq")
    yield b
    b.stop()


@pytest.fixture
def probe(broker):
    p = Probe(broker.host, broker.port)
    yield p
    p.close()
