# What a real ESP32 does that a desktop does not, modelled on the simulated board: a Wi-Fi
# driver that keeps retrying by itself (and refuses a second connect() meanwhile), a boot
# that must never end at the REPL.
import asyncio

from hwdevice import set_inputs
from mpcheck import check, eq, until

from wisp.hal import sim

WIFI = {"wifi": {"ssid": "home", "password": "pw"}}


async def test_wifi_up_after_the_router_boots_slower_than_the_board():
    set_inputs({"wifi": False})  # power cut: the router is still booting
    board = sim.Board()
    board.wifi_timeout_ms = 400
    logged = []
    check(not await board.connect_network(WIFI, logged.append), "connected with no access point")
    check(not await board.connect_network(WIFI, logged.append), "connected with no access point")
    check(not any("Internal" in line for line in logged), "the retry hit the driver error: %r" % logged)
    set_inputs(None)  # the router is up
    check(await board.connect_network(WIFI, logged.append), "did not connect once the router was up")
    eq(board.wlan.connects, 2, "connect() calls (the driver joined by itself once the router was up)")


async def test_a_driver_error_is_logged_and_retried_not_raised():
    set_inputs({"wifi": False})
    board = sim.Board()
    board.wlan.connect("home")  # something else already started the driver's retries
    board._wifi["asked"] = True
    board.wlan.disconnect = lambda: None  # a driver that refuses even that
    logged = []
    check(not await board.connect_network(WIFI, logged.append), "connected through a driver error")
    check("Wifi Internal Error" in logged[-1], logged)


# What the ESP32 driver reports while the board cannot join, as sim_inputs.json "wifi" plays it
# (the ESP-IDF disconnect reason of each try of the driver's), and what the user must read in the
# log line each attempt gives. A wrong WPA2 password comes as reason 15 on ESP-IDF 5 (status()
# stays STAT_CONNECTING) or as 202/205 (STAT_WRONG_PASSWORD); 201 is a name no 2.4 GHz network has.
WIFI_CASES = (
    ("wrong password, reported as such", 202, ("wrong password", "wifi.password")),
    ("wrong password, 'connection failed'", 205, ("wrong password", "wifi.password")),
    ("wrong password, now and then reported", [15, 205], ("wrong password", "wifi.password")),
    ("no such network (a typo, or 5 GHz only)", 201, ("not found", "wifi.ssid", "2.4 GHz")),
    ("router off", False, ("not found", "wifi.ssid", "2.4 GHz")),
    ("no password for a protected network", 210, ("wrong password", "wifi.password")),
    ("a driver that tells no reason", 15, ("wifi.password", "wifi.ssid", "2.4 GHz")),
    ("a handshake timeout", 204, ("wifi.password", "wifi.ssid", "2.4 GHz")),
)


async def test_a_failed_join_says_why_and_what_to_check():
    board = sim.Board()
    board.wifi_timeout_ms = 400
    for case, wifi, words in WIFI_CASES:
        set_inputs({"wifi": wifi})
        board.wlan.disconnect()
        logged = []
        check(not await board.connect_network(WIFI, logged.append), case + ": connected")
        eq(len(logged), 1, case + ": log lines of one attempt %r" % logged)
        for word in words:
            check(word in logged[0], "%s: %r not in %r" % (case, word, logged[0]))
        check(logged[0].startswith("error: wifi 'home' did not connect within "), logged[0])
    set_inputs(None)


async def test_the_reason_of_each_attempt_is_its_own():
    set_inputs({"wifi": 202})  # a wrong password
    board = sim.Board()
    board.wifi_timeout_ms = 400
    logged = []
    check(not await board.connect_network(WIFI, logged.append), "connected with a wrong password")
    set_inputs({"wifi": False})  # the router went off meanwhile
    check(not await board.connect_network(WIFI, logged.append), "connected with no access point")
    eq(len(logged), 2, "one line per attempt %r" % logged)
    check("wrong password" in logged[0] and "not found" in logged[1], logged)
    check(not any("Internal" in line for line in logged), "the retry hit the driver error: %r" % logged)
    set_inputs(None)
    check(await board.connect_network(WIFI, logged.append), "did not connect once the router was up")


def test_the_simulated_driver_reports_as_micropython_1_26():
    """status() of ports/esp32/network_wlan.c (v1.26.1): the reasons it names, in its order."""
    board = sim.Board()
    wlan = board.wlan
    set_inputs({"wifi": False})
    eq(wlan.status(), 1000, "before connect(): STAT_IDLE")
    wlan.connect("home", "pw")
    for reason, status in ((201, 201), (210, 210), (211, 211), (212, 212), (202, 202), (205, 202),
                           (15, 1001), (204, 1001), (200, 1001), (203, 1001)):
        set_inputs({"wifi": reason})
        eq(wlan.status(), status, "reason %d" % reason)
    wlan.disconnect()
    eq(wlan.status(), 203, "once the driver stops trying, any other reason is passed through")
    set_inputs(None)
    wlan.connect("home", "pw")
    eq(wlan.status(), 1010, "connected: STAT_GOT_IP")
    wlan.disconnect()
    eq(wlan.status(), 1000, "after disconnect() of a connected station (reason 8): STAT_IDLE")


def test_an_error_at_start_is_logged_then_the_board_resets():
    from wisp import app
    from wisp import log as wlog

    async def broken(path):
        raise MemoryError("memory allocation failed")
    app.FATAL_WAIT_MS, real = 0, app.main
    app.main = broken
    try:
        app.start()
        raise Exception("start() returned: the board would sit at the REPL")
    except SystemExit as e:  # the simulated board's reset()
        eq(e.args[0], 3, "exit code of a reset")
    finally:
        app.main = real
    check("fatal: MemoryError" in wlog.recent(1)[0], wlog.recent())


class NTPServer:
    """A UDP NTP server on 127.0.0.1, served from the event loop: answers each request with
    `reply(request)` (None: stays silent)."""

    def __init__(self, reply):
        import random
        import socket
        self.reply, self.asked = reply, 0
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):  # the unix port has no getsockname(): pick a free port ourselves
            self.port = random.randint(20000, 60000)
            try:
                self.s.bind(socket.getaddrinfo("127.0.0.1", self.port)[0][-1])
                break
            except OSError:
                pass
        self.s.setblocking(False)
        self.task = asyncio.create_task(self._serve())

    async def _serve(self):
        while True:
            try:
                data, addr = self.s.recvfrom(64)
            except OSError:
                await asyncio.sleep_ms(5)
                continue
            self.asked += 1
            out = self.reply(data)
            if out is not None:
                self.s.sendto(out, addr)

    def close(self):
        self.task.cancel()
        self.s.close()


def ntp_reply(unix, mode=4, stratum=2):
    import struct
    pkt = bytearray(48)
    pkt[0], pkt[1] = 0x20 | mode, stratum
    struct.pack_into("!I", pkt, 40, unix + 2208988800)
    return bytes(pkt)


NOW = 1780000000  # 2026-05-28


async def test_lan_only_clock_from_the_configured_server_then_the_broker_host():
    good = NTPServer(lambda req: ntp_reply(NOW))
    board, logged = sim.Board(), []
    try:
        # the first server is down (nothing listens), the second garbles, the broker's host answers
        cfg = {"ntp": ["127.0.0.1:9", "127.0.0.1:%d" % good.port], "broker": {"host": "127.0.0.1"}}
        eq(await board.sync_time(cfg, logged.append), "127.0.0.1:%d" % good.port, "server used")
        eq(board.synced_time, NOW, "clock")
        check("127.0.0.1:9" in logged[0], logged)
    finally:
        good.close()


async def test_garbled_ntp_replies_are_refused_and_the_next_server_asked():
    from wisp.hal import sntp
    replies = [b"\x24\x02short", ntp_reply(NOW, mode=3), ntp_reply(NOW, stratum=0), ntp_reply(100),
               ntp_reply(NOW)]
    bad = NTPServer(lambda req: replies.pop(0))
    board, logged = sim.Board(), []
    try:
        cfg = {"ntp": ["127.0.0.1:%d" % bad.port] * 5}
        for _ in range(4):
            try:
                await sntp.query(cfg["ntp"][0])
                raise Exception("a garbled reply set the clock")
            except ValueError:
                pass
        eq(await board.sync_time(cfg, logged.append), cfg["ntp"][0], "a good reply after garbled ones")
        eq(board.synced_time, NOW, "clock")
    finally:
        bad.close()


async def test_the_clock_task_survives_every_server_failing():
    silent = NTPServer(lambda req: None)
    try:
        board, logged = sim.Board(), []
        cfg = {"ntp": "127.0.0.1:%d" % silent.port, "broker": {"host": "127.0.0.1:9"}}
        eq(await board.sync_time(cfg, logged.append), None, "a silent server set the clock")
        eq(len(logged), 2, "each server's failure logged once")
        check(silent.asked == 1, "asked %d times" % silent.asked)
    finally:
        silent.close()


class _Spy:
    def __init__(self):
        self.got = []

    def on_ask(self, payload):
        self.got.append(("ask", payload))

    def on_llm_res(self, payload):
        self.got.append(("llm/res", payload))

    def on_cmd(self, payload):
        self.got.append(("cmd", payload))


async def test_deeply_nested_json_is_refused_before_parsing_on_every_topic():
    import gc

    from fakeboard import make_device

    from wisp import app
    dev = make_device()
    spy = _Spy()
    route = app._router(dev, spy, spy, None)
    unclosed = b"[" * 4090  # MemoryError in a small heap
    closed = b'{"id": "a", "text": ' + b"[" * 2030 + b"]" * 2030 + b"}"  # 65 KB of live lists
    topics = [dev.topic(sub) for sub in ("ask", "llm/res", "cmd")]
    gc.collect()
    free = gc.mem_free()
    for topic in topics:
        route(topic, unclosed, len(unclosed))
        route(topic, closed, len(closed))
    check(free - gc.mem_free() < 8000, "refusing took %d bytes" % (free - gc.mem_free()))
    eq(spy.got, [], "a handler parsed a deep payload")
    await until(lambda: len(dev.link.on(dev.topic("event"))) == 6)
    check("nested deeper than 16" in dev.link.on(dev.topic("event"))[0]["text"], dev.link.sent[0])
    # nesting that real messages use, and brackets inside strings, still get through
    fine = b'{"id": "r1", "v": 1, "text": "[[[[[[[[[[[[[[[[[[[[ok", "args": ' + b"[{" * 7 + b"}]" * 7 + b"}"
    route(dev.topic("ask"), fine, len(fine))
    eq(spy.got, [("ask", fine)], "a legitimate payload")


class _Job:
    def __init__(self):
        self.chunks = []

    def take(self, payload):
        self.chunks.append(payload)


async def test_an_update_chunk_is_binary_never_refused_as_json():
    # bundle bytes that happen to hold "[[[[..." (a string constant in a module) were refused as
    # JSON nested too deep: the same chunk every time, so the update stalled at that offset for good
    from fakeboard import make_device

    from wisp import app
    dev = make_device()
    dev.ota_job = _Job()
    route = app._router(dev, _Spy(), _Spy(), None)
    chunk = b"\x00\x00\x04\x00" + b"5d41402a" + b"[" * 300 + b"{" * 300
    route(dev.topic("ota/chunk"), chunk, len(chunk))
    eq(dev.ota_job.chunks, [chunk], "the chunk reached the update")
    await asyncio.sleep_ms(10)
    eq(dev.link.on(dev.topic("event")), [], "no refusal")


async def test_pin_edges_reach_the_inputs_task_through_the_irq_path():
    from hwdevice import make

    from wisp.inputs import Inputs
    set_inputs(None)
    dev = make()
    Inputs(dev).start()
    states = lambda: dev.link.on(dev.topic("state/door"))  # noqa: E731
    for level, state in ((0, "OFF"), (1, "ON"), (0, "OFF")):  # the flag clears itself each time
        set_inputs({"pins": {"4": level}})
        check(await until(lambda s=state: states() and states()[-1] == s), "door %s not published: %r"
              % (state, states()))
    eq(states(), ["OFF", "ON", "OFF"], "door states")
    dev.board.close()
    set_inputs(None)


async def test_sensor_publishing_and_the_tool_share_one_dht_read():
    from hwdevice import make

    from wisp import tools
    from wisp.inputs import Inputs
    set_inputs({"dht": {"15": [21.5, 40]}})
    dev = make(extra={"sensors": {"room": {"type": "dht22", "pin": 15}}, "sensor_interval_s": 3600})
    Inputs(dev).start()
    check(await until(lambda: dev.link.on(dev.topic("state/room"))), "no sensor state published")
    eq(await tools.run(dev, "sensor_read", {"name": "room"}), "room: temp=21.5 C, hum=40 %", "tool")
    eq(dev.board.dht_reads, 1, "DHT reads (each blocks a real board ~270 ms)")
    set_inputs(None)


async def test_dht_state_has_the_sensors_own_precision_not_float_noise():
    # a DHT22 measures tenths (the driver gives 22.700000000000003 for 22.7), a DHT11 whole numbers
    from hwdevice import make

    from wisp.inputs import Inputs
    set_inputs({"dht": {"15": [22.7, 44.9], "16": [21, 40]}})
    dev = make(extra={"sensors": {"room": {"type": "dht22", "pin": 15}, "attic": {"type": "dht11", "pin": 16}},
                      "sensor_interval_s": 3600})
    Inputs(dev).start()
    sent = lambda topic: [p for t, p, _r, _q in dev.link.sent if t == topic]  # noqa: E731
    check(await until(lambda: sent("wisp/t1/state/attic")), "no sensor state published")
    eq(sent("wisp/t1/state/room"), ['{"t":22.7,"h":44.9}'], "DHT22 state")
    eq(sent("wisp/t1/state/attic"), ['{"t":21,"h":40}'], "DHT11 state")
    set_inputs(None)


def test_boot_sets_outputs_safe_before_the_firmware_loads():
    import json
    with open("config.json", "w") as f:
        json.dump({"pins": {"relay": {"pin": 26, "mode": "out"}, "kept_on": {"pin": 27, "mode": "out", "init": 1},
                            "dimmer": {"pin": 25, "mode": "pwm"}, "door": {"pin": 4, "mode": "in"},
                            "flash": {"pin": 9, "mode": "out"}, "in_only": {"pin": 35, "mode": "out"},
                            "junk": {"pin": "x"}, "odd": 3}}, f)
    from wisp.hal import early
    board = sim.Board()
    eq(sorted(early.drive(board)), [(25, 0), (26, 0), (27, 1)], "safe levels (flash bus and input-only untouched)")
    eq((board.levels[25], board.levels[26], board.levels[27]), (0, 0, 1), "levels on the board")
    check(9 not in board.levels and 35 not in board.levels, "a pin the board must never drive was driven")
    with open("config.json", "w") as f:
        f.write("{broken")
    eq(early.drive(board), [], "a broken config")


def test_queued_messages_are_capped_by_bytes_not_only_by_count():
    from fakeboard import make_device

    from wisp import limits
    from wisp.agent import Agent
    dev = make_device()
    for i in range(4):  # four 3 KB replies owed while the link is down
        dev.outbox.owe("reply", "%d" % i + "x" * 3000)
    eq([p[0] for _s, p in dev.outbox.owed], ["2", "3"], "owed replies kept (the newest)")
    dev.link.up = False  # the answers wait in their queue
    for i in range(10):
        dev.outbox.answer("reply", {"id": "a%d" % i, "text": "y" * 1000})
    check(sum(len(p) for _s, p in dev.outbox.answers) <= limits.ANSWER_QUEUE_BYTES, "answers over their byte cap")
    check(dev.dropped >= 4, "dropped answers not counted: %d" % dev.dropped)
    from wisp.conversation import Conversation
    agent = Agent(dev)
    conv = Conversation(dev, agent.budget)
    conv._want = ("ask1.abc", 0)
    for seq in range(3):  # 4 KB each: the third would pass 8 KB
        conv.on_res({"id": "ask1.abc", "round": 0, "seq": seq}, 4000)
    eq(len(conv._res), 2, "llm/res held in one round")


def test_the_link_connects_before_the_agent_code_takes_the_heap():
    # A TLS handshake needs ~55 KB free: at boot it must come before the agent, tools, commands
    # and schedules are loaded, or a stock board's heap cannot connect at all.
    import json
    import sys

    from wisp import app, unload
    from wisp.mqtt import MQTTClient
    with open("config.json", "w") as f:
        f.write(json.dumps({"id": "early", "broker": {"host": "127.0.0.1", "port": 1}}))
    later = ("wisp.agent", "wisp.commands", "wisp.sched", "wisp.tools", "wisp.conversation", "wisp.inputs")
    for name in later:
        unload(name)
    seen = {}

    async def opened(self):
        seen["loaded"] = [name for name in later if name in sys.modules]
        raise OSError(111)  # no broker yet: boot goes on, the supervisor retries

    class Built(Exception):
        pass

    def build_then_stop(dev):
        real_build(dev)
        seen["link handlers"] = dev.link.on_message is not None and dev.link.on_connect is not None
        raise Built

    real_open, real_build = MQTTClient._open, app._build_agent
    MQTTClient._open, app._build_agent = opened, build_then_stop
    try:
        asyncio.run(app.main("config.json"))
        raise Exception("main() went on without building the agent")
    except Built:
        pass
    finally:
        MQTTClient._open, app._build_agent = real_open, real_build
    eq(seen.get("loaded"), [], "modules loaded before the first connect")
    check(seen.get("link handlers"), "the link has no handlers once the agent is built")
    check("wisp.agent" in sys.modules, "the agent was not loaded after the connect")


async def test_a_tls_device_sets_its_clock_before_its_first_connect():
    # At power-on an ESP32 reads 2000-01-01, when mbedTLS finds every certificate "not yet
    # valid": a first connect before the clock is set fails at every boot, and its retry comes
    # after the agent's code has taken the heap the handshake needed (the test above).
    import json

    from wisp import app
    from wisp.mqtt import MQTTClient
    server = NTPServer(lambda req: ntp_reply(NOW))
    with open("config.json", "w") as f:
        f.write(json.dumps({"id": "clock", "broker": {"host": "127.0.0.1", "port": 1},
                            "ntp": "127.0.0.1:%d" % server.port}))
    seen = {}

    class Built(Exception):
        pass

    def with_tls(path):
        dev = real_build(path)
        dev.link.ssl = object()  # what tls.context() gives for "tls": true and a CA
        return dev

    async def opened(self):
        seen["clock"] = app.device.board.synced_time
        raise OSError(111)

    def stop(dev):
        raise Built

    real_open, real_build, real_agent = MQTTClient._open, app._build_device, app._build_agent
    MQTTClient._open, app._build_device, app._build_agent = opened, with_tls, stop
    try:
        await app.main("config.json")
        raise Exception("main() went on without building the agent")
    except Built:
        pass
    finally:
        MQTTClient._open, app._build_device, app._build_agent = real_open, real_build, real_agent
        server.close()
    eq(seen.get("clock", "no connect"), NOW, "the clock at the first TLS connect")
