"""The HTTP server drops clients that send headers slowly or never, and idle keep-alive
connections, so half-sent requests cannot pile up sockets and file descriptors."""
import asyncio
from urllib.parse import urlsplit

from aiohttp import web

from bridge.web.server import IDLE_TIMEOUT_S, start

IDLE_S = 0.5  # the server's IDLE_TIMEOUT_S (15 s) in miniature
WAIT_S = 10.0  # how long the test waits for the server to act before failing


def test_slow_header_clients_are_dropped_and_idle_keep_alive_is_bounded():
    assert 0 < IDLE_TIMEOUT_S <= 30

    async def ok(request):
        return web.Response(text="ok")

    async def go():
        app = web.Application()
        app.router.add_get("/", ok)
        runner, url = await start(app, "127.0.0.1", 0, idle_timeout_s=IDLE_S)
        host, port = urlsplit(url).hostname, urlsplit(url).port
        try:
            # many half-sent requests, and one trickling its header a byte at a time
            conns = [await asyncio.open_connection(host, port) for _ in range(50)]
            for _r, w in conns:
                w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            trickle_r, trickle_w = conns[0]

            async def trickle():
                while not trickle_r.at_eof():
                    trickle_w.write(b"a")
                    await asyncio.sleep(IDLE_S / 5)
            dripping = asyncio.create_task(trickle())
            for r, _w in conns:
                assert await asyncio.wait_for(r.read(), WAIT_S) == b""  # closed by the server, unanswered
            dripping.cancel()
            # a whole request is answered; left idle on keep-alive, the connection is then closed
            r, w = await asyncio.open_connection(host, port)
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), WAIT_S)
            assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" not in head
            assert (await asyncio.wait_for(r.read(), WAIT_S)).endswith(b"ok")  # then EOF
            for _r, writer in conns + [(r, w)]:
                writer.close()
        finally:
            await runner.cleanup()
    asyncio.run(go())
