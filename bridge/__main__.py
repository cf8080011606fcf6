"""`python -m bridge [--config PATH]`: run the wisp bridge until SIGINT/SIGTERM. Exit code 2 on bad config."""
from __future__ import annotations

import argparse
import logging
import sys

from bridge import eventloop
from bridge.app import serve
from bridge.config import ConfigError, load_config
from bridge.cost import StoreError
from bridge.routing.router import NO_TIER_MESSAGE

log = logging.getLogger("wisp.bridge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge", description="wisp MQTT <-> LLM bridge")
    parser.add_argument("--config", metavar="PATH",
                        help="TOML config file (default: $WISP_CONFIG, else ./wisp.toml if present)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"wisp bridge: configuration error: {e}", file=sys.stderr)
        return 2
    mode = "shared subscription $share/wisp" if config.shared else "plain subscription (WISP_SHARED=0)"
    log.info("broker %s:%d%s, %s", config.broker_host, config.broker_port, " (TLS)" if config.broker_tls else "", mode)
    if config.signing_keys:
        log.info("signing llm/res for %d device(s)", len(config.signing_keys))  # never the keys
    for tier in config.tiers.values():
        log.info("tier %s", tier.describe())  # describe() never includes the key
    if not config.tiers:
        log.warning("%s", NO_TIER_MESSAGE)
    for req_class, route in config.routes.items():
        log.info("route %s: %s", req_class, " -> ".join(t for t in route if t in config.tiers) or "(none)")
    if config.cost.url:
        log.info("usage, budgets and request claims shared through PostgreSQL")
    try:
        eventloop.run(serve(config))
    except StoreError as e:
        print(f"wisp bridge: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:  # found only as the bridge starts (the HTTP port is taken)
        print(f"wisp bridge: configuration error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
