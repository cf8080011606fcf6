# The device's MQTT client against the run's real mosquitto (WISP_TEST_BROKER=host:port).
import asyncio
import os

from mpcheck import until

from wisp import limits
from wisp.mqtt import MQTTClient

HOST, PORT = os.getenv("WISP_TEST_BROKER").split(":")
PORT = int(PORT)


async def _client(name, got, **kw):
    c = MQTTClient(name, HOST, PORT, on_message=lambda t, p, n, r: got.append((t, p, n)), **kw)
    asyncio.create_task(c.run())
    if not await c.wait_up(5000):
        raise Exception("no connection to mosquitto at %s:%d" % (HOST, PORT))
    return c


async def test_qos0_and_qos1_round_trip_and_retained():
    got = []
    c = await _client("mp-rt", got)
    await c.subscribe("mptest/rt/#")
    if not await c.publish("mptest/rt/a", b"zero", qos=0):
        raise Exception("qos0 publish failed")
    if not await c.publish("mptest/rt/b", "one", qos=1, retain=True):
        raise Exception("qos1 publish not acknowledged")
    if not await until(lambda: len(got) == 2):
        raise Exception(got)
    if got != [("mptest/rt/a", b"zero", 4), ("mptest/rt/b", b"one", 3)]:
        raise Exception(got)
    later = []
    c2 = await _client("mp-rt2", later)
    await c2.subscribe("mptest/rt/b")
    if not await until(lambda: later) or later[0][1] != b"one":
        raise Exception("retained message not delivered: %r" % later)
    await c.publish("mptest/rt/b", b"", qos=1, retain=True)  # clear the retained message
    await c.stop()
    await c2.stop()


async def test_a_retained_message_is_marked_only_when_the_broker_replays_it():
    # MQTT-3.3.1-8/-9: RETAIN is 1 on what a (re)subscribe replays, 0 on live deliveries, even of
    # a message published with retain. The router refuses replayed commands on this bit (app.py).
    got = []
    pub = await _client("mp-ret-pub", [])
    await pub.publish("mptest/ret/cmd", b"old", qos=1, retain=True)
    c = MQTTClient("mp-ret", HOST, PORT, on_message=lambda t, p, n, r: got.append((p, r)))
    asyncio.create_task(c.run())
    await c.wait_up(5000)
    await c.subscribe("mptest/ret/cmd")
    if not await until(lambda: got) or got != [(b"old", 1)]:
        raise Exception("replay on subscribe: %r" % got)
    await pub.publish("mptest/ret/cmd", b"live", qos=1, retain=True)
    if not await until(lambda: len(got) == 2) or got[1] != (b"live", 0):
        raise Exception("live delivery: %r" % got)
    await c.subscribe("mptest/ret/cmd")  # as at every reconnect: replayed again, marked again
    if not await until(lambda: len(got) == 3) or got[2] != (b"live", 1):
        raise Exception("replay on resubscribe: %r" % got)
    await pub.publish("mptest/ret/cmd", b"", qos=1, retain=True)
    await c.stop()
    await pub.stop()


async def test_oversized_payload_is_skipped_and_the_link_stays_in_sync():
    got = []
    c = await _client("mp-big", got)
    await c.subscribe("mptest/big")
    big = b"x" * (limits.MAX_PAYLOAD + 5000)
    await c.publish("mptest/big", big, qos=1)
    await c.publish("mptest/big", b"after", qos=1)
    if not await until(lambda: len(got) == 2):
        raise Exception(got)
    if got[0] != ("mptest/big", None, len(big)) or got[1][1] != b"after":
        raise Exception([(t, p and p[:10], n) for t, p, n in got])
    await c.stop()


def _take_big_blocks(size):
    """Hold every free run of the heap that fits `size` bytes: a fragmented heap, where a message
    bigger than that finds no block while small allocations still do."""
    held = []
    try:
        while True:
            held.append(bytearray(size))
    except MemoryError:
        return held


async def test_a_message_with_no_heap_for_it_is_dropped_and_the_link_stays():
    # a 4 KB payload in a heap with 50 KB free in smaller holes raised MemoryError in the reader:
    # the link dropped, and with it every message in flight
    got, logs = [], []
    c = await _client("mp-starved", got, log=logs.append)
    pub = await _client("mp-starved-pub", [])
    await c.subscribe("mptest/starved")
    big = b"x" * 4000
    held = _take_big_blocks(2048)
    try:
        await pub.publish("mptest/starved", big, qos=1)
        await asyncio.sleep_ms(200)  # read (or not) while the heap has no 4 KB block
    finally:
        held.clear()  # the heap back for what follows
    await pub.publish("mptest/starved", b"after", qos=1)
    if not await until(lambda: got) or got != [("mptest/starved", b"after", 5)]:
        raise Exception([(t, p and p[:10], n) for t, p, n in got])
    if c.connects != 1 or not any("no 4000 bytes of heap" in line for line in logs):
        raise Exception((c.connects, logs))
    await c.stop()
    await pub.stop()


async def test_refused_connection_is_retried_not_raised():
    logs = []
    c = MQTTClient("mp-nobroker", HOST, 1, log=logs.append)  # nothing listens on port 1
    task = asyncio.create_task(c.run())
    await asyncio.sleep_ms(300)
    if c.up.is_set() or not logs or "retry in" not in logs[0]:
        raise Exception(logs)
    if await c.publish("x/y", b"z", wait_ms=50):
        raise Exception("publish claimed success without a broker")
    await c.stop()
    task.cancel()


async def test_a_broker_not_there_at_boot_is_one_line_that_says_what_to_check():
    # the boot's first try (open_first) and the supervisor's were two lines of "OSError(111,)"; an
    # ESP32 reports a refused connect as ECONNRESET (104), which was named as a TLS mismatch only
    logs = []
    c = MQTTClient("mp-noboot", HOST, 1, log=logs.append)  # nothing listens on port 1
    await c.open_first()
    task = asyncio.create_task(c.run())
    await asyncio.sleep_ms(300)
    await c.stop()
    task.cancel()
    if len(logs) != 1 or "retry in 500 ms" not in logs[0] or "no broker there" not in logs[0] \
            or "127.0.0.1:1 refused or reset" not in logs[0]:
        raise Exception(logs)


async def test_two_devices_with_one_client_id_back_off_instead_of_fighting():
    # mosquitto closes the older connection when a client id connects again: two devices given
    # one id (a config copied from board to board) kicked each other off ~30 times a second,
    # each logging "read failed: EOFError()" with nothing to say what to change
    logs = []
    twins = [MQTTClient("mp-twin", HOST, PORT, log=logs.append) for _ in range(2)]
    tasks = [asyncio.create_task(c.run()) for c in twins]
    try:
        await asyncio.sleep_ms(3000)  # backoff 500, 1000, 2000 ms on each side
        connects = sum(c.connects for c in twins)
        if connects > 8:
            raise Exception("%d connects in 3 s" % connects)
        if not any("client id mp-twin" in line for line in logs):
            raise Exception(logs[:6])
    finally:
        for c in twins:
            await c.stop()
        for task in tasks:
            task.cancel()


async def test_failed_on_connect_reconnects_and_subscribes_again():
    # a link that is up but never subscribed would look healthy and hear nothing
    got, logs, calls = [], [], []

    async def on_connect():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("announce failed")
        await c.subscribe("mptest/oc")

    c = MQTTClient("mp-oc", HOST, PORT, on_message=lambda t, p, n, r: got.append(p), on_connect=on_connect,
                   log=logs.append)
    task = asyncio.create_task(c.run())
    if not await until(lambda: c.connects == 2 and c.up.is_set() and len(calls) == 2, 5000):
        raise Exception("no reconnect after on_connect failed: %r %r" % (c.connects, logs))
    if not any("on_connect failed" in line for line in logs):
        raise Exception(logs)
    await asyncio.sleep_ms(100)  # the SUBACK of the second connect
    pub = await _client("mp-oc-pub", [])
    await pub.publish("mptest/oc", b"heard", qos=1)
    if not await until(lambda: got == [b"heard"]):
        raise Exception("not subscribed after the reconnect: %r" % got)
    await pub.stop()
    await c.stop()
    task.cancel()


class _LostTransport:
    """Writes vanish: the broker never sees the SUBSCRIBE, so no SUBACK comes."""

    def write(self, data):
        pass

    async def drain(self):
        pass


async def test_suback_timeout_leaves_no_ack_entry_behind():
    c = await _client("mp-suback", [])
    writer, c._writer = c._writer, _LostTransport()
    saved, limits.MQTT_ACK_TIMEOUT_MS = limits.MQTT_ACK_TIMEOUT_MS, 100
    try:
        await c.subscribe("mptest/lost")
        raise Exception("subscribe returned without a SUBACK")
    except asyncio.TimeoutError:
        pass
    finally:
        limits.MQTT_ACK_TIMEOUT_MS = saved
        c._writer = writer
    if c._acks:
        raise Exception("ack entries left behind: %r" % c._acks)
    await c.stop()


def _open_fds():
    return len(list(os.ilistdir("/proc/self/fd")))


async def test_reconnects_leave_no_socket_open():
    # MicroPython's Stream.close() closes nothing: on an ESP32 each leaked link pins a socket
    # (and under TLS ~25 KB of buffers) until the heap or the lwIP socket table runs out
    c = await _client("mp-leak", [])
    before = _open_fds()
    for i in range(3):
        c.up.clear()  # what a dead link looks like to the supervisor
        if not await until(lambda n=i + 2: c.connects == n, 5000):
            raise Exception("no reconnect %d" % (i + 1))
        await c.wait_up(5000)
    after = _open_fds()
    await c.stop()
    if after != before:
        raise Exception("open descriptors %d before 3 reconnects, %d after" % (before, after))
    if _open_fds() != before - 1:
        raise Exception("stop() left the socket open")


async def _silent_broker_timeout(ssl):
    # a broker host that accepts TCP and then says nothing: neither CONNACK nor a TLS handshake
    import random
    import socket
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for _ in range(50):
        port = random.randint(20000, 60000)
        try:
            srv.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError:
            pass
    srv.listen(4)
    logs = []
    c = MQTTClient("mp-silent", "127.0.0.1", port, log=logs.append, ssl=ssl, open_timeout_ms=300)
    task = asyncio.create_task(c.run())
    try:
        if not await until(lambda: len(logs) >= 2, 3000):
            raise Exception("the supervisor hangs on a silent broker: %r" % logs)
        if "TimeoutError" not in logs[0] or c.up.is_set():
            raise Exception(logs)
    finally:
        await c.stop()
        task.cancel()
        srv.close()


async def test_a_silent_broker_cannot_hold_the_connect():
    await _silent_broker_timeout(None)


async def test_a_stalled_tls_handshake_cannot_hold_the_connect():
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_NONE
    await _silent_broker_timeout(ctx)


async def test_what_counts_as_a_tls_handshake_out_of_memory():
    # the shapes the 32-bit build with mbedTLS in the Python heap raised when reconnecting short
    # of heap (bench/device_footprint.py), and failures a fresh heap would not cure
    from wisp.mqtt import MQTTError
    from wisp.mqtt_open import starved as _starved
    starved = [OSError(12), MemoryError("memory allocation failed"),
               OSError(-17040, "MBEDTLS_ERR_RSA_PUBLIC_FAILED+MBEDTLS_ERR_MPI_ALLOC_FAILED"),
               OSError(-0x7F00), OSError(-0x2880),
               ValueError("\nThe certificate is not correctly signed by the trusted CA\n")]
    not_starved = [OSError(111), OSError(113), OSError(-0x7280), OSError(-0x4280), asyncio.TimeoutError(),
                   MQTTError("expected CONNACK"), OSError("no errno")]
    wrong = [e for e in starved if not _starved(e)] + [e for e in not_starved if _starved(e)]
    if wrong:
        raise Exception("misread: %r" % wrong)


async def test_reconnects_short_of_memory_reset_only_a_link_that_once_worked():
    # on_connect (subscribe, announce) failing for memory again and again after the link had
    # worked: a fragmented heap, which a reset cures. Failing so from the first connect: a reset
    # would only loop, so the link just keeps retrying.
    resets, calls = {"worked": 0, "never": 0}, {"worked": 0, "never": 0}

    def client(name):
        async def on_connect():
            calls[name] += 1
            if name == "never" or calls[name] > 1:
                raise MemoryError("memory allocation failed, allocating 594 bytes")

        def on_starved():
            resets[name] += 1
        c = MQTTClient("mp-starved-" + name, HOST, PORT, on_connect=on_connect, on_starved=on_starved)
        asyncio.create_task(c.run())
        return c

    worked, never = client("worked"), client("never")
    try:
        if not await until(lambda: worked.ready == 1, 5000):
            raise Exception("no connection to mosquitto")
        worked.up.clear()  # the link drops: every reconnect now fails in on_connect
        if not await until(lambda: resets["worked"] == 1, 10000):
            raise Exception("no reset after %d failed reconnects" % (calls["worked"] - 1))
        if calls["worked"] != 1 + limits.STARVED_RESET:
            raise Exception("reset after %d failed reconnects" % (calls["worked"] - 1))
        if resets["never"] or calls["never"] < limits.STARVED_RESET:
            raise Exception("a link that never worked: %d resets in %d connects" % (resets["never"], calls["never"]))
    finally:
        await worked.stop()
        await never.stop()
