"""The bridge's event loop: uvloop (libuv) where it is installed, asyncio's own loop otherwise (e.g. Windows,
where uvloop does not build) or when WISP_UVLOOP=0 turns it off.

Why: the bridge spends its time in small socket reads and writes (MQTT, the tier's HTTP stream) and in the
loop's own bookkeeping between them; uvloop does both in C (docs/benchmarks.md, the fleet section).
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Mapping

from bridge.config import env_flag

log = logging.getLogger("wisp.bridge")


def loop_factory(env: Mapping[str, str] = os.environ) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """(a new-loop factory for asyncio.Runner, or None for asyncio's default; the loop's name for the log)."""
    if not env_flag("WISP_UVLOOP", env.get("WISP_UVLOOP") or "1"):
        return None, f"asyncio (WISP_UVLOOP={env['WISP_UVLOOP']})"
    try:
        import uvloop
    except ImportError:
        return None, "asyncio (uvloop not installed)"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


def run(main: Coroutine, env: Mapping[str, str] = os.environ):
    """asyncio.run(main) on the loop loop_factory() chooses."""
    factory, name = loop_factory(env)
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
