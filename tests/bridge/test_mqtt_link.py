"""The bridge's own MQTT link (bridge/mqtt_link.py, bridge/mqtt_wire.py) against a real mosquitto: QoS 1 messages
published while the broker is away arrive once it is back, in order, however many, on both kinds of link; the
answers' link sends at once but reads acknowledgements in batches; a broker that refuses the login is reported
and retried; packets split anywhere on the wire are read whole."""
import asyncio
import logging
import threading

import paho.mqtt.client as mqtt
import pytest

from bridge import mqtt_link
from bridge import mqtt_wire as wire
from bridge.mqtt_link import ACK_READ_AT, MAX_INFLIGHT, MqttLink
from tests.faults.netcut import NetCut
from tests.support import until
from tools.broker import free_port, start_mosquitto


def test_packets_split_anywhere_are_read_whole():
    stream = (wire.publish("wisp/d1/llm/req", b"x" * 300, 1, 7) + wire.puback(9)
              + wire.publish("t", b"", 0) + wire.publish("big", b"y" * 20_000, 1, 65535, dup=True))
    for step in (1, 2, 3, 7, 129, len(stream)):
        reader, got = wire.Reader(), []
        for k in range(0, len(stream), step):
            got += reader.feed(stream[k:k + step])
        assert [(kind, len(body)) for kind, _, body in got] == [(3, 319), (4, 2), (3, 3), (3, 20_007)]
        assert wire.read_publish(got[0][1], got[0][2]) == ("wisp/d1/llm/req", b"x" * 300, 1, 7)
        assert wire.read_pid(got[1][2]) == 9
        assert wire.read_publish(got[3][1], got[3][2])[2:] == (1, 65535) and got[3][1] & 0x08  # DUP kept


def test_a_remaining_length_beyond_four_bytes_is_refused():
    with pytest.raises(wire.ProtocolError):
        wire.Reader().feed(b"\x30\xff\xff\xff\xff\x01")


class Listener:
    """A plain paho subscriber: what reached the broker."""

    def __init__(self, broker, topic):
        self.got, self.lock = [], threading.Lock()
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.on_connect = lambda cl, *a: cl.subscribe(topic, 1)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = lambda cl, u, m: self.got.append(m.payload)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.parametrize("publish_only", [False, True], ids=["subscribed", "answers"])
def test_messages_published_while_the_broker_is_away_arrive_in_order(tmp_path, publish_only):
    port = free_port()
    n = MAX_INFLIGHT * 3  # more than may be in flight at once: the rest wait their turn
    # the link reaches the broker through a cable pulled until the listener has subscribed: a link that
    # reconnected first (it retries on its own) published into a broker with no subscriber yet
    cable = NetCut("127.0.0.1", port)
    cable.cut()

    async def publish_then_connect(broker_up: threading.Event):
        loop = asyncio.get_running_loop()
        link = MqttLink("127.0.0.1", cable.port, loop, lambda topic, payload, retained: None,
                        publish_only=publish_only)
        link.start()  # no broker, and the cable out: it retries
        for k in range(n):
            link.publish("wisp/d1/llm/res", {"seq": k})
        await asyncio.to_thread(broker_up.wait, 30)
        await asyncio.wait_for(link.subscribed.wait(), 30)
        await link.aclose()  # waits until the broker acknowledged what is in flight

    broker_up, listener, broker = threading.Event(), None, None
    runner = threading.Thread(target=lambda: asyncio.run(publish_then_connect(broker_up)))
    runner.start()
    try:
        cable.wait_refused(1)  # the link has tried: what it published waits in it
        broker = start_mosquitto(tmp_path / "mosq", port=port)
        listener = Listener(broker, "wisp/+/llm/res")
        assert listener.ready.wait(10)
        cable.restore()
        broker_up.set()
        runner.join(60)
        until(lambda: len(listener.got) >= n, 10, "every message")
        assert listener.got == [('{"seq":%d}' % k).encode() for k in range(n)]
    finally:
        broker_up.set()
        cable.restore()
        runner.join(60)
        cable.close()
        if listener:
            listener.close()
        if broker:
            broker.stop()


def test_the_answers_link_sends_at_once_and_reads_acknowledgements_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(mqtt_link, "MISC_EVERY_S", 30.0)  # no periodic read of acknowledgements in this test
    broker = start_mosquitto(tmp_path / "mosq")
    listener = Listener(broker, "wisp/+/llm/res")
    burst = MAX_INFLIGHT * 5

    async def run():
        loop = asyncio.get_running_loop()
        link = MqttLink(broker.host, broker.port, loop, lambda t, p, r: None, publish_only=True)
        link.start()
        await asyncio.wait_for(link.subscribed.wait(), 10)
        link.publish("wisp/d1/llm/res", {"seq": 0})
        for _ in range(500):  # its acknowledgement, read as the first data: reading then pauses
            if not link._inflight:
                break
            await asyncio.sleep(0.01)
        assert not link._inflight and not link.conn.transport.is_reading()
        link.publish("wisp/d1/llm/res", {"seq": 1})
        await asyncio.to_thread(until, lambda: len(listener.got) == 2, 10, "one more answer")
        await asyncio.sleep(0.2)  # its PUBACK is back by now, unread: no wake-up of the bridge for it
        assert len(link._inflight) == 1 and not link.conn.transport.is_reading()
        for k in range(2, burst):  # five times the window: reading resumes whenever half of it waits
            link.publish("wisp/d1/llm/res", {"seq": k})
        for _ in range(500):
            if not link._outbox and len(link._inflight) < ACK_READ_AT:
                break
            await asyncio.sleep(0.01)
        assert not link._outbox and len(link._inflight) < ACK_READ_AT, "the burst waited for acknowledgements"
        await asyncio.to_thread(until, lambda: len(listener.got) == burst, 10, "the burst")
        await asyncio.wait_for(link.aclose(), mqtt_link.CLOSE_GRACE_S)  # reads them before it disconnects
        assert not link._inflight  # all acknowledged: nothing would be sent twice

    try:
        assert listener.ready.wait(10)
        asyncio.run(run())
        assert listener.got == [('{"seq":%d}' % k).encode() for k in range(burst)]
    finally:
        listener.close()
        broker.stop()


def test_a_refused_login_is_reported_and_retried(tmp_path, caplog):
    broker = start_mosquitto(tmp_path / "mosq", extra_conf="allow_anonymous false\n")

    async def attempt():
        link = MqttLink(broker.host, broker.port, asyncio.get_running_loop(), lambda t, p, r: None,
                        user="nobody", password="wrong")
        link.start()
        try:
            for _ in range(300):
                if sum("refused the connection" in r.message for r in caplog.records) >= 2:
                    return
                await asyncio.sleep(0.05)
        finally:
            assert not link.subscribed.is_set()
            await link.aclose()

    try:
        with caplog.at_level(logging.INFO, logger="wisp.bridge.mqtt"):
            asyncio.run(attempt())
        refusals = [r.message for r in caplog.records if "refused the connection" in r.message]
        assert len(refusals) >= 2, caplog.text  # told, then tried again after its back-off
        assert "not authorized" in refusals[0] or "bad user name or password" in refusals[0]
    finally:
        broker.stop()
