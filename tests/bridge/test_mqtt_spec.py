"""The bridge's MQTT link held to MQTT 3.1.1 (OASIS) and to real mosquitto: a retained request is not answered at
every connect, a peer that is not a broker or a broker that breaks the protocol costs a clean reconnect (never a
hang or a huge read), a message over the link's limit is skipped as it arrives, a refused subscription is said and
asked again, a dead broker is noticed within the keepalive. Packets mosquitto never sends come from a fake broker
on 127.0.0.1 written here."""
import asyncio
import contextlib
import logging
import struct
import time

import pytest

from bridge import mqtt_link, protocol
from bridge import mqtt_wire as wire
from bridge.config import load_config
from bridge.fleet import Fleet
from bridge.mqtt_link import MqttLink
from tests.bridge.harness import BridgeThread
from tests.bridge.test_bridge_mqtt import Device, llm_req
from tests.fakes.openai_server import FakeOpenAI
from tools.broker import start_mosquitto

CONNACK_OK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


def suback(pid: int, codes: bytes) -> bytes:
    return bytes([0x90, 2 + len(codes)]) + struct.pack("!H", pid) + codes


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    n, mult = 0, 1
    while True:
        digit = (await reader.readexactly(1))[0]
        n += (digit & 0x7F) * mult
        mult <<= 7
        if not digit & 0x80:
            break
    return first, await reader.readexactly(n)


class FakeBroker:
    """Listens on 127.0.0.1; each connection runs script(reader, writer, index). Records when each connection
    came and when the link closed it."""

    def __init__(self, script):
        self.script = script
        self.opened: list[float] = []
        self.closed: list[float] = []
        self.sent: list[int] = []  # bytes the script wrote on each connection before the link closed it

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        index = len(self.opened)
        self.opened.append(time.monotonic())
        self.sent.append(0)
        try:
            await self.script(reader, writer, index, self)
            await reader.read()  # until the link closes it
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.append(time.monotonic())
            writer.close()


async def until_async(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def link_to(port, on_message=lambda t, p, r: None, **kw):
    link = MqttLink("127.0.0.1", port, asyncio.get_running_loop(), on_message, **kw)
    link.start()
    try:
        yield link
    finally:
        await asyncio.wait_for(link.aclose(), 5)


@pytest.fixture
def quick_retry(monkeypatch):
    monkeypatch.setattr(mqtt_link, "RECONNECT_MIN_S", 0.05)
    monkeypatch.setattr(mqtt_link, "RECONNECT_MAX_S", 0.2)


# ---- retained requests (real mosquitto) -----------------------------------------------------------------------
def test_a_retained_request_is_not_answered_at_any_connect(tmp_path, caplog):
    """MQTT 3.1.1, 3.3.1.3: the broker sends a retained message to every new subscriber, shared ones included
    (mosquitto 2.0 does), RETAIN set. A request someone published with retain would be answered, and its tokens
    paid, at every connect of every bridge."""
    broker = start_mosquitto(tmp_path / "mosq")
    fake = FakeOpenAI()
    fake.start_in_thread()
    empty = tmp_path / "wisp.toml"
    empty.write_text("")
    config = load_config(str(empty), env={"WISP_BROKER": f"{broker.host}:{broker.port}",
                                          "WISP_LOCAL_URL": fake.base_url})
    device = Device(broker, "dev1")
    try:
        device.publish_manifest()  # retained: must still be read
        device.publish("llm/req", llm_req("stale.1"), retain=True)
        for attempt, live_id in enumerate(("live.1", "live.2")):  # two bridge starts: two subscribes
            bridge = BridgeThread(config).start()
            try:
                device.publish("llm/req", llm_req(live_id))
                assert device.answers(live_id)[-1][1]["done"]  # the retained manifest was read
                late = device.drain()
            finally:
                bridge.stop()
            assert not [m for m in late if m.get("id") == "stale.1"], f"connect {attempt}: stale request answered"
        assert len(fake.requests) == 2  # one tier call per live request, none for the retained one
        assert sum("retained llm/req ignored" in r.getMessage() for r in caplog.records) == 2
    finally:
        device.close()
        fake.stop()
        broker.stop()


def test_retained_news_is_not_taken_for_new_but_retained_states_are():
    events = []
    fleet = Fleet(lambda *a: None, events.append)
    fleet.handle("d1", ["status"], b'{"v":1,"state":"online"}', True)
    fleet.handle("d1", ["state", "porch"], b"ON", True)
    fleet.handle("d1", ["ask"], b'{"v":1,"id":"a1","text":"old"}', True)
    fleet.handle("d1", ["event"], b'{"v":1,"kind":"error","text":"old"}', True)
    dev = fleet.devices["d1"]
    assert dev.online and dev.states == {"porch": "ON"}
    assert not dev.recent  # a replayed ask or event is not something that just happened
    assert dev.last_seen is None  # a retained status may be a week old: not "seen 3 s ago"
    fleet.handle("d1", ["ask"], b'{"v":1,"id":"a2","text":"new"}', False)
    assert [e["id"] for e in dev.recent] == ["a2"]
    fleet.handle("d1", ["state", "porch"], b"OFF", False)
    assert dev.last_seen is not None


# ---- device ids ------------------------------------------------------------------------------------------------
def test_a_device_id_with_a_final_newline_is_not_a_device_id():
    # re's $ matches before a final newline: the bridge answered wisp/dev1\n/llm/req on wisp/dev1\n/llm/res
    assert protocol.parse("wisp/dev1\n/llm/req") is None
    assert not protocol.is_device_id("dev1\n")
    assert protocol.parse("wisp/dev1/llm/req") == ("dev1", ["llm", "req"])


# ---- peers that are not brokers, broken CONNACKs -------------------------------------------------------------
async def _answer(reader, writer, index, fake, answer: bytes, stream: bool = False):
    await read_packet(reader)  # CONNECT
    writer.write(answer)
    fake.sent[index] += len(answer)
    await writer.drain()
    while stream:  # the huge packet's body, as fast as the link takes it, until it closes the connection
        writer.write(b"\x00" * 65536)
        fake.sent[index] += 65536
        await writer.drain()


@pytest.mark.parametrize("answer,stream", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False),
    (b"SSH-2.0-OpenSSH_9.2\r\n", False),
    (b"\x20\x03\x00\x00\x00", False),  # a CONNACK of 3 bytes
    (b"\x20\x01\x00", False),  # of 1 byte
    (b"\x90\x03\x00\x01\x00", False),  # a SUBACK before any CONNACK
    (b"\x20\xff\xff\xff\x7f", True),  # a CONNACK announcing 256 MB, and sending it
    (b"\x30\xff\xff\xff\x7f\x00\x01t", True),  # a PUBLISH of 256 MB instead of a CONNACK
], ids=["http", "ssh", "connack-3-bytes", "connack-1-byte", "suback-first", "connack-256MB", "publish-256MB"])
def test_a_peer_that_answers_connect_with_anything_but_a_connack_is_dropped_at_once(answer, stream, quick_retry,
                                                                                     caplog):
    async def run():
        async with FakeBroker(lambda r, w, i, f: _answer(r, w, i, f, answer, stream)) as fake:
            async with link_to(fake.port) as link:
                await until_async(lambda: len(fake.closed) >= 2, 3, "dropped and tried again")
                assert not link.subscribed.is_set() and link.conn is None
            assert fake.closed[0] - fake.opened[0] < 1.0  # not the CONNECT_TIMEOUT_S (10 s) wait
            assert fake.sent[0] < 4 * 1024 * 1024  # the link did not read the 256 MB
    with caplog.at_level(logging.WARNING, logger="wisp.bridge.mqtt"):
        asyncio.run(run())
    assert "not a CONNACK" in caplog.text


# ---- protocol violations after the CONNACK ------------------------------------------------------------------------
def _publish_raw(first: int, body: bytes) -> bytes:
    return bytes([first]) + wire._length(len(body)) + body


async def _serve_then(reader, writer, index, fake, extra: bytes):
    await read_packet(reader)  # CONNECT
    writer.write(CONNACK_OK)
    first, body = await read_packet(reader)  # SUBSCRIBE
    assert first == 0x82
    pid = struct.unpack_from("!H", body)[0]
    writer.write(suback(pid, b"\x00\x01\x01"))
    if index == 0:
        writer.write(extra)
    await writer.drain()


@pytest.mark.parametrize("extra", [
    b"\x82\x08\x00\x01\x00\x03a/b\x00",  # a SUBSCRIBE, which only a client sends
    b"\x62\x02\x00\x05",  # a PUBREL: the link never sends QoS 2
    b"\x20\x02\x00\x00",  # a second CONNACK
    b"\xe0\x00",  # a DISCONNECT (MQTT 5 only, server to client)
    _publish_raw(0x36, b"\x00\x01t\x00\x01x"),  # QoS 3
    _publish_raw(0x30, b"\x00\x09ab"),  # a topic longer than its packet
], ids=["subscribe", "pubrel", "second-connack", "disconnect", "qos3", "topic-past-the-end"])
def test_a_protocol_violation_from_the_broker_costs_a_reconnect(extra, quick_retry):
    """MQTT 3.1.1, 4.8: on a protocol violation the client MUST close the network connection."""
    async def run():
        async with FakeBroker(lambda r, w, i, f: _serve_then(r, w, i, f, extra)) as fake:
            async with link_to(fake.port) as link:
                await until_async(lambda: len(fake.opened) >= 2 and link.subscribed.is_set(), 3,
                                  "dropped, then subscribed again")
                assert len(fake.closed) == 1
    asyncio.run(run())


def test_a_non_utf8_topic_is_read_without_costing_the_link(quick_retry):
    got = []

    async def run():
        bad = _publish_raw(0x30, b"\x00\x0fwisp/d\xff1/llm/req" + b"{}")
        good = _publish_raw(0x30, b"\x00\x0fwisp/d1/llm/req" + b'{"a":1}')

        async with FakeBroker(lambda r, w, i, f: _serve_then(r, w, i, f, bad + good)) as fake:
            async with link_to(fake.port, lambda t, p, r: got.append((t, p))):
                await until_async(lambda: len(got) == 2, 3, "both messages")
            assert len(fake.opened) == 1
    asyncio.run(run())
    assert protocol.parse(got[0][0]) is None  # never a device topic: the bridge ignores it
    assert got[1] == ("wisp/d1/llm/req", b'{"a":1}')


# ---- size limit ------------------------------------------------------------------------------------------------
def test_a_publish_over_the_limit_comes_out_without_its_payload_and_the_stream_goes_on():
    big = wire.publish("wisp/d1/llm/req", b"x" * (wire.MAX_PACKET + 10), 1, 42)
    stream = big + wire.publish("wisp/d1/manifest", b"{}", 1, 43)
    reader, got, most = wire.Reader(), [], 0
    for k in range(0, len(stream), 4096):
        got += reader.feed(stream[k:k + 4096])
        most = max(most, len(reader._buf))
    assert most < 2 * 4096  # skipped as it came, never held
    assert [kind for kind, _, _ in got] == [wire.TOO_BIG, wire.PUBLISH]
    assert wire.read_publish(got[0][1], got[0][2]) == ("wisp/d1/llm/req", b"", 1, 42)
    assert wire.read_publish(got[1][1], got[1][2]) == ("wisp/d1/manifest", b"{}", 1, 43)


def test_a_message_over_the_limit_from_mosquitto_is_skipped_and_the_link_stays(tmp_path, caplog):
    broker = start_mosquitto(tmp_path / "mosq")
    got = []

    async def run():
        async with link_to(broker.port, lambda t, p, r: got.append((t, len(p)))) as link:
            await asyncio.wait_for(link.subscribed.wait(), 10)
            conn = link.conn
            sender = MqttLink("127.0.0.1", broker.port, asyncio.get_running_loop(), lambda *a: None,
                              publish_only=True)
            sender.start()
            await asyncio.wait_for(sender.subscribed.wait(), 10)
            sender.publish("wisp/d1/llm/req", b"{" * (3 * wire.MAX_PACKET))  # nested and huge
            sender.publish("wisp/d1/llm/req", b"{}", qos=0)
            await until_async(lambda: got, 10, "the small message after the big one")
            await sender.aclose()
            assert link.conn is conn  # the same connection throughout
    with caplog.at_level(logging.WARNING, logger="wisp.bridge.mqtt"):
        try:
            asyncio.run(run())
        finally:
            broker.stop()
    assert got == [("wisp/d1/llm/req", 2)]
    assert "wisp/d1/llm/req skipped unread" in caplog.text


# ---- subscriptions, keepalive -------------------------------------------------------------------------------------
async def _refuse_subscriptions(reader, writer, index, fake):
    await read_packet(reader)
    writer.write(CONNACK_OK)
    _, body = await read_packet(reader)
    writer.write(suback(struct.unpack_from("!H", body)[0], b"\x80\x01\x01"))  # e.g. an ACL without $share/
    await writer.drain()


def test_a_refused_request_subscription_is_said_and_asked_again(quick_retry, caplog):
    async def run():
        async with FakeBroker(_refuse_subscriptions) as fake:
            async with link_to(fake.port) as link:
                await until_async(lambda: len(fake.opened) >= 2, 3, "a new connection, to subscribe again")
                assert not link.subscribed.is_set()
    with caplog.at_level(logging.WARNING, logger="wisp.bridge.mqtt"):
        asyncio.run(run())
    refusals = [r.getMessage() for r in caplog.records if "refused subscriptions" in r.getMessage()]
    assert refusals and "$share/wisp/wisp/+/llm/req (0x80)" in refusals[0] and "no requests" in refusals[0]


async def _close_on_shared_subscribe(reader, writer, index, fake):
    await read_packet(reader)
    writer.write(CONNACK_OK)
    await writer.drain()
    _, body = await read_packet(reader)
    if b"$share/" in body:  # ejabberd 23.01's mod_mqtt: no SUBACK, the connection closed
        writer.close()
        return
    writer.write(suback(struct.unpack_from("!H", body)[0], b"\x00\x01"))
    await writer.drain()


def test_a_broker_that_closes_on_share_subscribe_is_told_to_use_plain_subscriptions(quick_retry, caplog):
    """MQTT 3.1.1, 3.8.4: a SUBSCRIBE gets a SUBACK, 0x80 for a filter the broker will not serve. A broker without
    shared subscriptions that closes the connection instead (ejabberd 23.01) left only "disconnected ...
    reconnecting" lines in the log, over and over, and the bridge never got a request."""
    async def run():
        async with FakeBroker(_close_on_shared_subscribe) as fake:
            async with link_to(fake.port, shared=True) as link:
                await until_async(lambda: len(fake.opened) >= 2, 3, "a new connection, to subscribe again")
                assert not link.subscribed.is_set()
            async with link_to(fake.port, shared=False) as link:
                await until_async(lambda: link.subscribed.is_set(), 3, "plainly subscribed")
    with caplog.at_level(logging.WARNING, logger="wisp.bridge.mqtt"):
        asyncio.run(run())
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert said and "closed the connection" in said[0] and "WISP_SHARED=0" in said[0]
    assert all("$share/" in s for s in said)  # nothing said of the plain subscription


async def _silent_after_suback(reader, writer, index, fake):
    first, body = await read_packet(reader)
    fake.keepalive = struct.unpack_from("!H", body, 8)[0]  # protocol name (6), level, flags, then keepalive
    writer.write(CONNACK_OK)
    _, body = await read_packet(reader)
    writer.write(suback(struct.unpack_from("!H", body)[0], b"\x00\x01"))
    await writer.drain()
    while True:  # a broker that stopped (SIGSTOP, a hung node) with its TCP still open: reads, never answers
        await reader.readexactly(1)


def test_a_broker_that_stops_answering_is_left_within_the_keepalive(monkeypatch, quick_retry):
    monkeypatch.setattr(mqtt_link, "KEEPALIVE_S", 2)
    monkeypatch.setattr(mqtt_link, "MISC_EVERY_S", 0.1)

    async def run():
        async with FakeBroker(_silent_after_suback) as fake:
            async with link_to(fake.port, shared=True) as link:
                await until_async(lambda: link.subscribed.is_set(), 3, "subscribed")
                up = time.monotonic()
                await until_async(lambda: fake.closed, 6, "the dead broker noticed")
                # a ping after KEEPALIVE_S/2 of silence, given KEEPALIVE_S to answer, checked every MISC_EVERY_S
                assert fake.closed[0] - up < 2 / 2 + 2 + 2 * 0.1 + 0.5
            assert fake.keepalive == 2
    asyncio.run(run())


async def _refuse(reader, writer, index, fake, code):
    await read_packet(reader)
    writer.write(bytes([0x20, 2, 0, code]))
    await writer.drain()


@pytest.mark.parametrize("code,words", [(2, "1-23 characters of 0-9 a-z A-Z"), (4, "bad user name or password"),
                                        (5, "not authorized"), (9, "return code 9")])
def test_a_refused_connect_is_said_in_words(code, words, quick_retry, caplog):
    """MQTT 3.1.1, 3.2.2.3: return codes 1-5. A generated client id is 24-25 characters with '-', more than the
    23 alphanumerics 3.1.3.1 promises: a strict broker's refusal names the id."""
    async def run():
        async with FakeBroker(lambda r, w, i, f: _refuse(r, w, i, f, code)) as fake:
            async with link_to(fake.port):
                await until_async(lambda: len(fake.opened) >= 2, 3, "tried again")
    with caplog.at_level(logging.ERROR, logger="wisp.bridge.mqtt"):
        asyncio.run(run())
    refusals = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
    assert refusals and words in refusals[0]
    if code == 2:
        assert "'wisp-bridge-" in refusals[0]
