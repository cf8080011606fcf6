"""WebSocket /api/events: every dashboard event (device status, pin states, device events, asks, replies,
command results, tier decisions) fanned out to connected clients. Each client has a bounded queue: a slow
client loses events (counted, and told how many) instead of slowing the bridge or growing its memory.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from aiohttp import WSCloseCode, WSMsgType, web

from bridge.web.errors import error

log = logging.getLogger("wisp.bridge.events")

CLIENT_QUEUE_MAX = 256  # events buffered per client; beyond it new events are dropped for that client
MAX_CLIENTS = 64  # concurrent WebSocket clients per bridge
TIER_HISTORY = 120  # recent tier decisions sent to each new client (the dashboard's latency chart)
HEARTBEAT_S = 20.0  # WebSocket ping interval: a vanished browser is noticed and its queue freed


class Client:
    def __init__(self, device: str | None):
        self.device = device  # only this device's events (tier events included), or all when None
        self.queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE_MAX)
        self.dropped = 0  # since the last "dropped" notice sent to this client


class EventHub:
    def __init__(self):
        self.clients: set[Client] = set()
        self.dropped_total = 0  # events lost to slow clients since start (a metric)
        self.published_total = 0
        self.recent_tiers: deque = deque(maxlen=TIER_HISTORY)  # replayed to a new client: charts start full
        self.closed = asyncio.Event()  # the bridge is stopping: every client gets a last `closing` event
        self.closing_reason = ""

    def publish(self, event: dict) -> None:
        """Called on the loop for every event; never blocks."""
        self.published_total += 1
        if event.get("type") == "tier":
            self.recent_tiers.append(event)
        for c in self.clients:
            if c.device and event.get("device") != c.device:
                continue
            try:
                c.queue.put_nowait(event)
            except asyncio.QueueFull:
                c.dropped += 1
                self.dropped_total += 1

    def subscribe(self, device: str | None) -> Client | None:
        if len(self.clients) >= MAX_CLIENTS:
            return None
        c = Client(device)
        self.clients.add(c)
        return c

    def unsubscribe(self, c: Client) -> None:
        self.clients.discard(c)

    def close(self, reason: str) -> None:
        """Each client is sent what it has queued, then `closing` with the reason, and closed (1001, going away)."""
        self.closing_reason = reason
        self.closed.set()


async def serve_events(request: web.Request, hub: EventHub, device: str | None) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        # a plain GET (a browser tab, curl): 426 names the protocol to use (RFC 9110 section 15.5.22)
        resp = error(426, "/api/events is a WebSocket: connect with a WebSocket client (ws://.../api/events)")
        resp.headers["Upgrade"] = "websocket"
        resp.headers["Connection"] = "Upgrade"
        return resp
    if hub.closed.is_set():
        return error(503, hub.closing_reason)
    client = hub.subscribe(device)
    if client is None:
        return error(503, f"too many event clients ({MAX_CLIENTS}); close another dashboard tab")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
    close_code = WSCloseCode.OK
    try:
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "device": device, "queue_max": CLIENT_QUEUE_MAX,
                                      "ts": time.time()}))
        history = [e for e in hub.recent_tiers if device is None or e.get("device") == device]
        await ws.send_str(json.dumps({"type": "history", "events": history}, ensure_ascii=False, default=str))
        reader = asyncio.create_task(_read_until_closed(ws))
        closing = asyncio.create_task(hub.closed.wait())
        getter = None
        try:
            while True:
                getter = asyncio.create_task(client.queue.get())
                done, _ = await asyncio.wait({getter, reader, closing}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await _send(ws, client, getter.result())
                elif closing in done:
                    getter.cancel()
                    while not client.queue.empty():  # what was queued before the bridge began to stop goes out
                        await _send(ws, client, client.queue.get_nowait())
                    await ws.send_str(json.dumps({"type": "closing", "reason": hub.closing_reason, "ts": time.time()}))
                    close_code = WSCloseCode.GOING_AWAY
                    break
                else:
                    break  # the client closed
        finally:
            for task in (reader, closing, getter):
                if task:
                    task.cancel()
    except ConnectionResetError:  # the browser went away mid-send
        pass
    finally:
        hub.unsubscribe(client)
        if ws.prepared:
            await ws.close(code=close_code, message=b"bridge shutting down" if close_code != WSCloseCode.OK else b"")
    return ws


async def _send(ws: web.WebSocketResponse, client: Client, event: dict) -> None:
    if client.dropped:
        # Tell the client it missed events, so it can refresh from the REST API.
        await ws.send_str(json.dumps({"type": "dropped", "count": client.dropped, "ts": time.time()}))
        client.dropped = 0
    await ws.send_str(json.dumps(event, ensure_ascii=False, default=str))


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    """Clients send nothing we need; reading is how a close (or a dead peer) is noticed."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break
