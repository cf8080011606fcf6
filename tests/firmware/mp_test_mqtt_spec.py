# The device's MQTT against the 3.1.1 spec where no real broker goes: a fake broker on 127.0.0.1
# that speaks the protocol but sends what mosquitto never would (broken packets, a refused
# subscription, a peer that is not a broker), and the router's answer to retained commands.
import asyncio
import json
import random
import time

from fakeboard import make_device
from mpcheck import check, until

from wisp.agent import Agent
from wisp.app import _router
from wisp.commands import Commands
from wisp.mqtt import MQTTClient

CONNACK = b"\x20\x02\x00\x00"


class FakeBroker:
    """Answers CONNECT with `connack` (then sends `script`), SUBSCRIBE with a SUBACK of `granted`,
    PINGREQ with PINGRESP; records each packet the device sends as (first byte, body). It never
    closes a connection itself, so a client that waits for more bytes waits for good."""

    def __init__(self, script=b"", connack=CONNACK, granted=b"\x01", hang_up=False):
        self.script, self.connack, self.granted = script, connack, granted
        self.hang_up = hang_up  # close each connection right after its CONNACK
        self.got = []
        self.conns = 0

    async def start(self):
        for _ in range(50):
            self.port = random.randint(20000, 60000)
            try:
                self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
                return self
            except OSError:
                pass
        raise Exception("no free port")

    async def _serve(self, r, w):
        self.conns += 1
        try:
            while True:
                first = (await r.readexactly(1))[0]
                n = shift = 0
                while True:
                    b = (await r.readexactly(1))[0]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                body = await r.readexactly(n) if n else b""
                self.got.append((first, body))
                kind = first & 0xF0
                if kind == 0x10:
                    w.write(self.connack + self.script)
                    if self.hang_up:
                        await w.drain()
                        w.s.close()  # Stream.close() alone leaves the socket open
                        break
                elif kind == 0x80:
                    w.write(b"\x90\x03" + body[:2] + self.granted)
                elif kind == 0xC0:
                    w.write(b"\xd0\x00")
                await w.drain()
        except Exception:
            pass
        w.close()

    def close(self):
        self.server.close()


async def _link(broker, **kw):
    logs = []
    c = MQTTClient("mp-spec", "127.0.0.1", broker.port, log=logs.append, **kw)
    task = asyncio.create_task(c.run())
    return c, task, logs


async def _stop(c, task, broker):
    await c.stop()
    task.cancel()
    broker.close()


async def test_a_malformed_publish_drops_the_link_and_never_hangs_it():
    # MQTT-4.8.0-1: on a protocol violation, close the connection. A topic longer than its packet
    # used to be skipped into the next packets (or wait for bytes never sent); QoS 3 was taken
    # as a message (MQTT-3.3.1-4). A remaining length over 4 bytes (2.2.3) was already refused.
    for script, what in ((b"\x30\x03\x00\x0ax", "topic longer than the packet"),
                         (b"\x32\x03\x00\x01a", "QoS 1 with no packet id"),
                         (b"\x36\x07\x00\x01a\x00\x01ok", "QoS 3"),
                         (b"\x30\xff\xff\xff\xff\x01", "a 5-byte remaining length")):
        broker = await FakeBroker(script).start()
        got = []
        c, task, logs = await _link(broker, on_message=lambda *a, got=got: got.append(a))
        try:
            if not await until(lambda logs=logs: any("read failed" in line for line in logs), 2000):
                raise Exception("%s: link still up, %r %r" % (what, logs, got))
            if got:
                raise Exception("%s: delivered %r" % (what, got))
        finally:
            await _stop(c, task, broker)


async def test_a_peer_that_is_not_a_broker_fails_the_connect_without_a_huge_read():
    # its first bytes read as a 256 MB packet: refused on the header, not read (a MemoryError
    # here would count as a starved heap and, repeated, reset the board)
    broker = await FakeBroker(connack=b"\x20\xff\xff\xff\x7f" + b"x" * 64).start()
    c, task, logs = await _link(broker, open_timeout_ms=1000)
    try:
        if not await until(lambda: logs, 3000):
            raise Exception("no failed connect logged")
        if "expected CONNACK" not in logs[0]:
            raise Exception(logs[0])
    finally:
        await _stop(c, task, broker)


async def test_a_broker_name_that_does_not_resolve_is_named():
    # getaddrinfo's own error is "OSError(-202)" on an ESP32: nothing says the name is the problem
    logs = []
    c = MQTTClient("mp-spec", "broker.invalid", 1883, log=logs.append)  # .invalid never resolves
    task = asyncio.create_task(c.run())
    try:
        if not await until(lambda: logs, 5000) or "cannot resolve broker.invalid" not in logs[0]:
            raise Exception(logs)
    finally:
        await c.stop()
        task.cancel()


async def test_connack_refusals_say_why():
    # 3.2.2.3: 4 is a bad user name or password, 5 not authorised, 2 a client id the broker does
    # not take (3.1.1 only promises 23 characters of 0-9a-zA-Z). mosquitto answers 5 to a wrong
    # password, an unknown user and a missing login alike: both name the settings to check.
    for code, reason in ((2, "client id rejected"), (4, "bad user name or password (broker.user, broker.password?)"),
                         (5, "not authorised (broker.user, broker.password?)")):
        broker = await FakeBroker(connack=bytes((0x20, 2, 0, code))).start()
        c, task, logs = await _link(broker)
        try:
            if not await until(lambda logs=logs: logs, 3000) or "broker refused connection: " + reason not in logs[0]:
                raise Exception("code %d: %r" % (code, logs))
        finally:
            await _stop(c, task, broker)


async def test_a_broker_that_hangs_up_after_connack_is_retried_with_backoff():
    # e.g. EMQX or AWS IoT closing the link over a publish its ACL denies, or another device
    # taking our client id: the link "works" for a moment each time. Reconnecting at once after
    # every drop dialled it hundreds of times a second and flooded the log with no reason given.
    broker = await FakeBroker(hang_up=True).start()
    c, task, logs = await _link(broker)
    try:
        await asyncio.sleep_ms(2000)  # backoff 500 + 1000 ms: 3 connects
        check(broker.conns <= 4, "%d connects in 2 s" % broker.conns)
        check(any("after connecting" in line and "retry in" in line for line in logs), logs[:6])
    finally:
        await _stop(c, task, broker)


async def test_a_refused_subscription_is_logged_with_its_topic():
    # SUBACK 0x80 (3.9.3): e.g. an EMQX or HiveMQ ACL (mosquitto grants and then sends nothing)
    broker = await FakeBroker(granted=b"\x80").start()
    c, task, logs = await _link(broker)
    try:
        await c.wait_up(3000)
        await c.subscribe("wisp/t1/ota/chunk")
        if not any("refused the subscription to wisp/t1/ota/chunk" in line for line in logs):
            raise Exception(logs)
        if not c.up.is_set():
            raise Exception("the link dropped over one refused topic")
    finally:
        await _stop(c, task, broker)


class _FailingTransport:
    def write(self, data):
        raise OSError(104)  # ECONNRESET

    async def drain(self):
        pass


class _StuckTransport:
    """A dead link on lwIP: the send buffer is full and a write waits until TCP gives up."""

    def write(self, data):
        pass

    async def drain(self):
        await asyncio.sleep_ms(60000)


async def test_a_qos0_publish_sent_again_after_a_reconnect_has_no_dup_flag():
    # MQTT-3.3.1-2: DUP MUST be 0 on QoS 0 (a strict broker closes the link for it)
    broker = await FakeBroker().start()
    c, task, logs = await _link(broker)
    try:
        await c.wait_up(3000)
        real, c._writer = c._writer, _FailingTransport()
        real.s.close()
        if not await c.publish("mptest/q0", b"again", qos=0, wait_ms=3000):
            raise Exception("not sent after the reconnect: %r" % logs)
        def pubs():
            return [first for first, _ in broker.got if first & 0xF0 == 0x30]
        if not await until(pubs) or pubs() != [0x30]:
            raise Exception("PUBLISH flags %r" % [hex(f) for f in pubs()])
    finally:
        await _stop(c, task, broker)


async def test_keepalive_drops_a_link_whose_writes_hang():
    # limits.MQTT_KEEPALIVE_S: a silent link is dropped after 1.5x the keepalive. A ping stuck
    # behind a full send buffer used to hold that check until TCP gave up, minutes later.
    broker = await FakeBroker().start()
    c, task, logs = await _link(broker, keepalive_s=1)
    try:
        await c.wait_up(3000)
        real, c._writer = c._writer, _StuckTransport()
        try:
            # dropped, and connected again after the backoff (the supervisor's work)
            if not await until(lambda: c.connects == 2 and c.up.is_set(), 4000):
                raise Exception("link kept with its writes stuck: %r" % logs)
        finally:
            real.s.close()
    finally:
        await _stop(c, task, broker)


async def test_stop_on_a_dead_link_returns_and_closes():
    # The REPL's ask() stops the link it started: a DISCONNECT stuck behind a full send buffer
    # held the prompt until TCP gave up.
    broker = await FakeBroker().start()
    c, task, logs = await _link(broker)
    try:
        await c.wait_up(3000)
        real, c._writer = c._writer, _StuckTransport()
        try:
            t0 = time.ticks_ms()
            await asyncio.wait_for_ms(c.stop(), 5000)
            took = time.ticks_diff(time.ticks_ms(), t0)
            check(took < 3000 and c._writer is None and not c.up.is_set(), "stop took %d ms" % took)
        finally:
            real.s.close()
    finally:
        task.cancel()
        broker.close()


def _routed():
    dev = make_device()
    agent, commands = Agent(dev), Commands(dev)
    return dev, agent, _router(dev, agent, commands, "homeassistant/status")


def _events(dev):
    return [json.loads(p)["text"] for t, p, _r, _q in dev.link.sent if t == "wisp/t1/event"]


async def test_retained_commands_are_refused_and_cleared_retained_states_applied():
    # The broker replays a retained message at every (re)subscribe: a retained ask or cmd would
    # run again after every reconnect (an LLM call, a relay toggled), forever.
    dev, agent, on_message = _routed()
    task = asyncio.create_task(agent.run())
    try:
        ask = json.dumps({"v": 1, "id": "r1", "text": "turn on the fan"}).encode()
        cmd = json.dumps({"v": 1, "id": "c1", "tool": "gpio_toggle", "args": {"pin": "porch_light"}}).encode()
        on_message("wisp/t1/ask", ask, len(ask), 1)
        on_message("wisp/t1/cmd", cmd, len(cmd), 1)
        on_message("wisp/t1/set/_restart", b"reboot", 6, 1)
        on_message("wisp/t1/set/porch_light", b"toggle", 6, 1)
        on_message("wisp/t1/llm/res", b"{}", 2, 1)
        await until(lambda: len(_events(dev)) == 5)
        for sub in ("ask", "cmd", "set/_restart", "set/porch_light", "llm/res"):
            check(any(e.startswith("retained %s refused" % sub) for e in _events(dev)), (sub, _events(dev)))
            check(("wisp/t1/" + sub, "", True, 1) in dev.link.sent, "retained %s not cleared" % sub)
        # our clearing coming back (not retained, empty): no command in it, no error reply
        for sub in ("ask", "cmd", "set/porch_light", "set/_restart"):
            on_message("wisp/t1/" + sub, b"", 0, 0)
        await asyncio.sleep_ms(100)
        check(not dev.link.on("wisp/t1/reply") and not dev.link.on("wisp/t1/cmd/res"), dev.link.sent)
        check(dev.board.levels[18] == 0 and dev.board.levels[5] == 0 and dev.board.resets == 0, dev.board.levels)
        check(len(_events(dev)) == 5, _events(dev))
        # a retained ON from Home Assistant's `retain` option is a state to restore: applied
        on_message("wisp/t1/set/fan", b"ON", 2, 1)
        check(await until(lambda: dev.board.levels[18] == 1), "retained set/fan ON not applied")
        # the same commands live act as before
        on_message("wisp/t1/cmd", cmd, len(cmd), 0)
        check(await until(lambda: dev.link.on("wisp/t1/cmd/res")), "live cmd not run")
        check(dev.board.levels[5] == 1, dev.link.on("wisp/t1/cmd/res"))
    finally:
        task.cancel()


async def test_a_retained_home_assistant_birth_does_not_announce_again():
    dev, _agent, on_message = _routed()
    on_message("homeassistant/status", b"online", 6, 1)  # replayed at our subscribe
    await asyncio.sleep_ms(200)
    check(not [t for t, _p, _r, _q in dev.link.sent if t.startswith("homeassistant/")], "announced on a replay")
    on_message("homeassistant/status", b"online", 6, 0)  # Home Assistant restarting
    check(await until(lambda: [t for t, _p, _r, _q in dev.link.sent if t.startswith("homeassistant/")]),
          "not announced when Home Assistant restarted")
