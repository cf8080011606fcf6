"""host:port as users write it for WISP_BROKER, WISP_HTTP and `wisp --broker`: names, IPv4, and IPv6
in brackets or bare; a wrong one is refused in words."""
import pytest

from bridge.address import join_host_port, split_host_port
from bridge.config import ConfigError, load_config


@pytest.mark.parametrize("text, want", [
    ("broker.lan", ("broker.lan", 1883)),
    ("broker.lan:8883", ("broker.lan", 8883)),
    ("10.0.0.2:1884", ("10.0.0.2", 1884)),
    ("[::1]:1883", ("::1", 1883)),
    ("[fe80::1%eth0]", ("fe80::1%eth0", 1883)),
    ("::1", ("::1", 1883)),                      # bare IPv6: no port can follow it
    (" broker.lan:1 ", ("broker.lan", 1)),
])
def test_addresses_people_write(text, want):
    assert split_host_port(text, 1883, "broker") == want


@pytest.mark.parametrize("text, words", [
    ("", "has no host"),
    (":1883", "has no host"),
    ("[::1", "IPv6 address goes in brackets"),
    ("[::1]1883", "IPv6 address goes in brackets"),
    ("[]:1883", "has no host"),
    ("broker.lan:0", "must be a number 1-65535"),
    ("broker.lan:65536", "must be a number 1-65535"),
    ("broker.lan:http", "must be a number 1-65535"),
    ("[::1]:", "must be a number 1-65535"),
])
def test_wrong_addresses_are_refused_in_words(text, words):
    with pytest.raises(ValueError, match=words):
        split_host_port(text, 1883, "broker")


def test_a_required_port_and_port_zero_for_any_free_port():
    with pytest.raises(ValueError, match="has no port"):
        split_host_port("127.0.0.1", None, "WISP_HTTP")
    assert split_host_port("[::1]:0", None, "WISP_HTTP", allow_zero=True) == ("::1", 0)


def test_it_reads_back_as_written():
    assert join_host_port("::1", 1883) == "[::1]:1883"
    assert join_host_port("broker.lan", 1883) == "broker.lan:1883"


def test_the_bridge_takes_ipv6_brokers_and_http_addresses():
    cfg = load_config(env={"WISP_BROKER": "::1", "WISP_HTTP": "[::1]:0", "WISP_SHARED": "0"})
    assert (cfg.broker_host, cfg.broker_port, cfg.http.host, cfg.http.port) == ("::1", 1883, "::1", 0)
    with pytest.raises(ConfigError, match="WISP_BROKER .* IPv6 address goes in brackets"):
        load_config(env={"WISP_BROKER": "[::1"})
