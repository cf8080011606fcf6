# Wires the device together: config -> board -> named pins -> MQTT link -> agent, commands.
# `build()` makes the parts without starting anything, so the serial REPL (wisp.repl) can use
# them after Ctrl-C; `start()` runs them.
import asyncio
import os

from wisp import limits, unload
from wisp import log as wlog
from wisp import pins as pins_mod
from wisp.device import Device
from wisp.hal import Board
from wisp.log import log
from wisp.mqtt import MQTTClient

# The agent, its tools, commands, schedules and inputs are imported by _build_agent, after the first
# connect: a TLS handshake needs ~55 KB of free heap, which it finds before their code is loaded
# (~40 KB of bytecode and names) and not after (docs/architecture.md "Heap budget").

NETWORK_RETRY_MS = 5000
CLOCK_RESYNC_MS = 6 * 3600 * 1000  # NTP again every 6 h: the ESP32 RTC drifts seconds a day
CLOCK_RETRY_MS = 60 * 1000
CONFIG_PATH = "config.json"  # wisp/config.py's DEFAULT_PATH: that module loads only to read it
FATAL_WAIT_MS = 10000  # after an unexpected error: log, wait this long, reset

device = None   # the running Device, for wisp.repl
agent = None
_offering = False  # an update offer is being answered


def _ha():
    # Home Assistant code is imported when there is something to do for it, not held for good
    from wisp import ha
    return ha


def _ha_status_topic(dev):
    # Home Assistant's birth topic, where it says `online` when it starts: homeassistant/status
    # whatever the discovery prefix, unless its MQTT options changed it (then ha.status_topic)
    ha = _ha()
    topic = ha.opt(dev, "status_topic", "homeassistant/status") if ha.enabled(dev) else None
    del ha
    unload("wisp.ha")  # kept out of the heap until a connect or set/ command needs it
    return topic


def json_refusal(data, limit=limits.MAX_JSON_DEPTH):
    """Why JSON text is not to be parsed, or None: arrays/objects nested deeper than limit, or more
    than MAX_JSON_NODES of them. json.loads builds every one before any check could run: 4 KB of
    "[[[..." parses into ~65 KB of live objects, 4 KB of "[[],[],..." into ~52 KB (32-bit port)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return None  # the common case, with no Python loop over the bytes
    depth, nodes, in_str, esc = 0, 0, False, False
    for c in data:
        if in_str:
            if esc:
                esc = False
            elif c == 92:  # backslash
                esc = True
            elif c == 34:  # quote
                in_str = False
        elif c == 34:
            in_str = True
        elif c == 91 or c == 123:  # [ {
            depth += 1
            nodes += 1
            if depth > limit:
                return "nested deeper than %d levels" % limit
            if nodes > limits.MAX_JSON_NODES:
                return "with more than %d arrays and objects" % limits.MAX_JSON_NODES
        elif c == 93 or c == 125:  # ] }
            depth -= 1
    return None


def _router(dev, agent, commands, ha_status):
    prefix_len = len(dev.prefix)

    def on_message(topic, payload, size, retained=0):
        global _offering
        if not topic.startswith(dev.prefix):
            # a retained birth is the broker replaying it to us: we announced at connect anyway
            if topic == ha_status and payload == b"online" and not retained:
                dev.spawn(dev._discovery(), "homeassistant/status")  # HA restarted: it forgot us
            return
        sub = topic[prefix_len:]
        # The broker replays a retained message at every (re)subscribe: a retained ask or cmd
        # would run again after every reconnect. A set/<pin> ON, OFF or duty is a state, safe to
        # apply again (Home Assistant's `retain` option restores it so); TOGGLE and a press are not.
        if retained and not (sub[:4] == "set/" and sub != "set/_restart" and payload
                             and b"TOGGLE" not in payload.upper()):
            text = "retained %s refused: publish it without retain, or it runs again at every reconnect" % sub
            log("error: " + text)
            dev.spawn(_refuse_retained(dev, topic, text), sub)
            return
        if payload == b"" and sub != "log/get":
            return  # how a retained message is cleared (by us, above): no command in it
        if payload is None:
            text = "payload of %d bytes on %s refused: limit is %d" % (size, topic, limits.MAX_PAYLOAD)
            log("error: " + text)
            dev.spawn(dev.event("error", text), "event")
        elif sub != "ota/chunk" and (why := json_refusal(payload)):  # on every JSON topic, before parsing
            text = "payload on %s refused: JSON %s" % (topic, why)
            log("error: " + text)
            dev.spawn(dev.event("error", text), "event")
            return
        if sub == "ask":
            agent.on_ask(payload)
        elif sub == "llm/res":
            agent.on_llm_res(payload)
        elif sub == "cmd":
            commands.on_cmd(payload)
        elif payload and sub.startswith("set/"):  # None: too big, refused above; nothing to set
            if dev.signed == "only":  # Home Assistant cannot sign: signed-only devices take signed cmd
                from wisp import sign
                sign.refuse(dev, "unsigned " + sub)
            else:  # a word or a number: a longer payload is refused from its first bytes, not
                # held whole (and copied) by each of the tasks refusing a flood of them
                dev.spawn(_set(dev, sub[4:], payload if len(payload) < 40 else payload[:24] + b"..."), sub)
        elif sub == "log/get":
            from wisp import logfeed
            dev.spawn(logfeed.send(dev, wlog.RING_SIZE, ring=True), sub)
        elif sub == "ota/chunk":
            job = getattr(dev, "ota_job", None)  # None: no update running (a late duplicate)
            if job is not None:
                job.take(payload)
        elif sub == "ota/offer":
            if _offering:  # one at a time, and its 4 KB: `wisp ota` offers again when unanswered
                dev.count_drop(sub)
            else:
                _offering = dev.spawn(_offer(dev, payload, size), sub)
    return on_message


async def _set(dev, name, payload):
    try:
        await _ha().on_set(dev, name, payload)
    finally:
        unload("wisp.ha")  # as after a connect's announce: loaded again by the next command


async def _offer(dev, payload, size):
    global _offering
    from wisp import ota  # loaded only while an update runs (docs/ota.md)
    try:
        await ota.on_offer(dev, payload, size)
    finally:
        ota = None
        _offering = False
        if getattr(dev, "ota_job", None) is None:  # refused: anyone may send junk offers
            unload("wisp.ota")


async def _refuse_retained(dev, topic, text):
    await dev.event("error", text)
    # Cleared: this topic is the device's inbox, and the sender wanted the command run, not
    # kept; left there, it would be refused again at every reconnect.
    await dev.link.publish(topic, b"", True, 1, 0)


async def _ota_after_connect(dev):
    try:
        os.stat("ota")  # there since the first update offer: before it, nothing to load
    except OSError:
        return
    try:
        from wisp import ota
        await ota.on_connect(dev)
    except Exception as e:  # never let the update bookkeeping stop the device from coming online
        log("error: ota: %r" % (e,))
    if getattr(dev, "ota_job", None) is None:
        unload("wisp.ota")


def build(config_path=CONFIG_PATH):
    """The parts not built yet, nothing started (the serial REPL's helpers use them): all of them,
    or the agent's when Ctrl-C came before the first connect (the board still joining Wi-Fi)."""
    dev = device or _build_device(config_path)
    if agent is None or agent.dev is not dev:
        _build_agent(dev)
    return dev, agent


def _build_device(config_path):
    """Config, board, pins and the MQTT link: what connecting needs."""
    global device
    from wisp import config
    cfg, _errors = config.load(config_path, log)
    del config
    unload("wisp.config")  # one-shot: the checked dict is all the device keeps
    board = Board()
    if cfg["id"] is None:
        cfg["id"] = "wisp-" + board.unique_id()[-6:]
    dev = Device(cfg, board, pins_mod.setup(cfg.get("pins", {}), board, log))
    broker = cfg["broker"]
    tls_ctx = None
    if broker.get("tls"):
        from wisp import tls
        try:
            tls_ctx = tls.context(broker)
        except tls.TLSConfigError as e:
            log("config error: %s; not connecting" % e)
            broker["port"] = 0  # never fall back to plain text: the link keeps failing, visibly
        unload("wisp.tls")  # one-shot: the context is all the link needs
    dev.link = MQTTClient("wisp-" + dev.id, broker["host"], broker["port"], broker.get("user"),
                          broker.get("password"), will=(dev.topic("status"), dev.status_payload("offline"), True, 1),
                          log=log, ssl=tls_ctx, on_starved=lambda: restart_for_heap(dev))
    device = dev
    return dev


def restart_for_heap(dev):
    """Reset the board for the heap it has after boot, its outputs kept at their levels (pins.py
    keep_levels): a broker restart must not switch the lights off. Any other reset (crash, power
    cut) starts them at their safe levels."""
    try:
        try:
            pins_mod.keep_levels(dev.pins)
        except Exception as e:  # flash full, or not even this much heap: the reset matters more
            log("error: output levels not kept over the reset: %r" % (e,))
    finally:
        dev.board.reset()


def _build_agent(dev):
    """The agent, commands and schedules, and the link's handlers that reach them."""
    global agent
    from wisp.agent import Agent
    from wisp.commands import Commands
    agent = Agent(dev)
    commands = Commands(dev)
    agent.fresh = commands.fresh  # signed-only asks share the commands' replay memory
    _add_state(dev, agent)
    ha_status = _ha_status_topic(dev)
    link, broker = dev.link, dev.config["broker"]

    async def on_connect():
        for suffix in ("ask", "llm/res", "cmd", "set/+", "log/get", "ota/offer", "ota/chunk"):
            await link.subscribe(dev.topic(suffix))
        if ha_status:
            await link.subscribe(ha_status)
        await dev.announce()
        await _ota_after_connect(dev)  # confirms an updated version on trial: it connected
        log("online as %s on %s:%d" % (dev.id, broker["host"], broker["port"]))

    link.on_message = _router(dev, agent, commands, ha_status)
    link.on_connect = on_connect


def _add_state(dev, agent):
    """Schedules, from the flash root. Memory and routines load on first use (Device.__getattr__)."""
    from wisp.sched import Scheduler

    async def fire(job):
        action = job["action"]
        if "routine" in action:  # offline, no LLM
            # a job the LLM added acts for the LLM, with no one there to say "yes"
            result = await dev.routines.run(action["routine"], "schedule", 2 if job.get("llm") else 0)
            dev.rest()
            await dev.event("schedule", "%s: %s" % (job["name"], result))
        else:  # a prompt the LLM scheduled acts for it, in the fast path too (confirm.py)
            agent.submit(action["prompt"], "sched", llm=2 if job.get("llm") else 0)

    dev.sched = Scheduler(dev, fire, log=log)


async def _keep_clock(dev):
    # the config's "ntp" servers, else pool.ntp.org, then the broker's host (hal/sntp.py)
    while True:
        if await dev.board.sync_time(dev.config, log):
            dev.sched.wake()  # jobs due now that the clock is right should not wait
            await asyncio.sleep_ms(CLOCK_RESYNC_MS)
        else:
            log("clock: time sync failed; schedules wait for a valid clock")
            await asyncio.sleep_ms(CLOCK_RETRY_MS)


async def _feed_watchdog(board, period_ms):
    # Fed from a task: if anything blocks the event loop, the feeding stops and the board resets.
    while True:
        board.wdt_feed()
        await asyncio.sleep_ms(period_ms)


async def main(config_path=CONFIG_PATH):
    dev = _build_device(config_path)
    wdt_s = dev.config.get("wdt_s")
    if isinstance(wdt_s, int) and wdt_s > 0:
        dev.board.wdt_start(wdt_s * 1000)
        asyncio.create_task(_feed_watchdog(dev.board, wdt_s * 1000 // 3))
    while not await dev.board.connect_network(dev.config, log):
        await asyncio.sleep_ms(NETWORK_RETRY_MS)
    if dev.link.ssl:  # an ESP32 powers on at 2000-01-01, when every certificate is "not yet valid"
        await dev.board.sync_time(dev.config, log)
    await dev.link.open_first()  # one try; a broker not there yet is the supervisor's to retry
    _build_agent(dev)
    asyncio.create_task(_keep_clock(dev))
    asyncio.create_task(dev.link.run())
    asyncio.create_task(dev.sched.run())
    from wisp import logfeed
    asyncio.create_task(logfeed.run(dev))
    from wisp.inputs import Inputs
    Inputs(dev).start()
    await agent.run()


def start(config_path=CONFIG_PATH):
    try:
        asyncio.run(main(config_path))
    except KeyboardInterrupt:  # Ctrl-C on the serial REPL: leave the user at the prompt
        from wisp import repl
        repl.stopped()
    except Exception as e:  # a board at the REPL stays offline for good: restart it instead
        fatal(e, device.board if device is not None else None)


def fatal(e, board=None):
    """Log what stopped the firmware, wait (a reset loop must not flood the log or the broker),
    reset the board. main.py does the same when importing the firmware fails."""
    import time
    try:
        log("fatal: %r; resetting in %d s" % (e, FATAL_WAIT_MS // 1000))
    except Exception:
        pass  # even logging failed (out of memory): reset anyway
    time.sleep_ms(FATAL_WAIT_MS)
    (board or Board()).reset()
