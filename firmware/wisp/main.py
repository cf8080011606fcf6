# Wires the device together: config -> board -> named pins -> MQTT link -> agent.
import asyncio

from wisp import config, limits, pins as pins_mod
from wisp.agent import Agent
from wisp.device import Device
from wisp.hal import Board
from wisp.log import log
from wisp.mqtt import MQTTClient

NETWORK_RETRY_MS = 5000


def _route(dev, agent):
    prefix_len = len(dev.prefix)

    def on_message(topic, payload, size):
        if not topic.startswith(dev.prefix):
            return
        sub = topic[prefix_len:]
        if payload is None:
            text = "payload of %d bytes on %s refused: limit is %d" % (size, topic, limits.MAX_PAYLOAD)
            log("error: " + text)
            asyncio.create_task(dev.event("error", text))
        if sub == "ask":
            agent.on_ask(payload)
        elif sub == "llm/res":
            agent.on_llm_res(payload)
    return on_message


async def main(config_path=config.DEFAULT_PATH):
    cfg, _errors = config.load(config_path, log)
    board = Board()
    if cfg["id"] is None:
        cfg["id"] = "wisp-" + board.unique_id()[-6:]
    dev = Device(cfg, board, pins_mod.setup(cfg.get("pins", {}), board, log))
    agent = Agent(dev)
    broker = cfg["broker"]

    async def on_connect():
        await link.subscribe(dev.topic("ask"))
        await link.subscribe(dev.topic("llm/res"))
        await dev.announce()
        log("online as %s on %s:%d" % (dev.id, broker["host"], broker["port"]))

    link = MQTTClient("wisp-" + dev.id, broker["host"], broker["port"], broker.get("user"), broker.get("password"),
                      will=(dev.topic("status"), dev.status_payload("offline"), True, 1),
                      on_message=_route(dev, agent), on_connect=on_connect, log=log)
    dev.link = link
    while not await board.connect_network(cfg, log):
        await asyncio.sleep_ms(NETWORK_RETRY_MS)
    asyncio.create_task(link.run())
    await agent.run()


def start(config_path=config.DEFAULT_PATH):
    try:
        asyncio.run(main(config_path))
    except KeyboardInterrupt:  # Ctrl-C on the serial REPL: leave the user at the prompt
        log("stopped by user")
