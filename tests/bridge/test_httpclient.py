"""The tier calls' HTTP/1.1 client against real sockets: scripted servers on loopback that answer with exactly
the bytes a test needs (chunked, Content-Length, to-the-end, compressed, broken), and a TLS server."""
import asyncio
import gzip
import ssl

import pytest

from bridge.httpclient import ConnectTimeout, Cut, HttpClient, HttpError
from tests.tlsutil import make_ca


class Scripted:
    """A loopback server: each connection reads requests and writes the answers script(request_no) gives."""

    def __init__(self, answers, ssl_context=None):
        self.answers = answers  # list of bytes (or callables writer -> coroutine), one per request overall
        self.requests: list[bytes] = []
        self.connections = 0
        self.ssl = ssl_context

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.ssl else 'http'}://127.0.0.1:{port}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                             .split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers[len(self.requests) - 1]
                if callable(answer):
                    await answer(writer)
                    continue
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"


async def body_of(resp) -> bytes:
    out = b""
    async with resp:
        while piece := await resp.chunk():
            out += piece
    return out


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_chunked_stream_then_same_connection_reused():
    answer = SSE_HEAD + chunked(b"data: 1\n\n", b"data: 2\n\n")

    async def go():
        async with Scripted([answer, answer]) as srv, HttpClient() as http:
            bodies = []
            for _ in range(2):
                resp = await http.post(srv.url, b'{"a":1}', {"Authorization": "Bearer k"}, 5)
                assert resp.status == 200 and resp.content_type == "text/event-stream"
                bodies.append(await body_of(resp))
            return bodies, srv.connections, srv.requests[0]
    bodies, connections, first = run(go())
    assert bodies == [b"data: 1\n\ndata: 2\n\n"] * 2
    assert connections == 1  # kept alive
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 7\r\n" in first and b"Authorization: Bearer k\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')


def test_content_length_error_body_and_headers_any_case():
    body = b'{"error":{"message":"slow down"}}'
    answer = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    async def go():
        async with Scripted([answer]) as srv, HttpClient() as http:
            resp = await http.post(srv.url, b"{}", {}, 5)
            async with resp:
                return resp.status, resp.headers.get("retry-after"), resp.headers.get("Retry-After"), \
                    await resp.read()
    assert run(go()) == (429, "3", "3", body)


def test_body_until_close_is_read_and_connection_not_reused():
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: x\n\n"

    async def closing(writer):
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def go():
        async with Scripted([closing, closing]) as srv, HttpClient() as http:
            first = await body_of(await http.post(srv.url, b"{}", {}, 5))
            second = await body_of(await http.post(srv.url, b"{}", {}, 5))
            return first, second, srv.connections
    assert run(go()) == (b"data: x\n\n", b"data: x\n\n", 2)


def test_informational_answer_skipped_and_gzip_undone():
    data = gzip.compress(b"data: hello\n\n")
    answer = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(data), data))

    async def go():
        async with Scripted([answer]) as srv, HttpClient() as http:
            resp = await http.post(srv.url, b"{}", {}, 5)
            return resp.status, await body_of(resp)
    assert run(go()) == (200, b"data: hello\n\n")


def test_cut_mid_body_is_an_error_not_an_end():
    async def cut(writer):
        writer.write(SSE_HEAD + b"9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        writer.transport.abort()

    async def go():
        async with Scripted([cut]) as srv, HttpClient() as http:
            resp = await http.post(srv.url, b"{}", {}, 5)
            first = await resp.chunk()
            with pytest.raises(Cut):
                await resp.chunk()
            resp.release()
            return first
    assert run(go()) == b"data: 1\n\n"


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                    SSE_HEAD + b"zz\r\n"])
def test_garbage_is_a_clear_error(answer):
    async def go():
        async with Scripted([answer]) as srv, HttpClient() as http:
            resp = await http.post(srv.url, b"{}", {}, 5)
            await body_of(resp)
    with pytest.raises(HttpError):
        run(go())


def test_deadline_bounds_a_silent_stream_also_when_moved_closer():
    async def stall(writer):
        writer.write(SSE_HEAD)
        await writer.drain()
        await asyncio.sleep(0.1)  # the client waits for the first event under a far deadline
        writer.write(chunked(b"data: 1\n\n")[:-5])  # the first event, then silence
        await writer.drain()
        await asyncio.sleep(10)

    async def go():
        loop = asyncio.get_running_loop()
        async with Scripted([stall]) as srv, HttpClient() as http:
            resp = await http.post(srv.url, b"{}", {}, 5)
            resp.deadline = loop.time() + 5
            assert await resp.chunk() == b"data: 1\n\n"
            resp.deadline = loop.time() + 0.2  # moved after data, as the provider does per read
            started = loop.time()
            with pytest.raises(TimeoutError):
                await resp.chunk()
            waited = loop.time() - started
            resp.release()
            return waited
    assert 0.15 <= run(go()) < 2


def test_reused_connection_the_server_closes_unanswered_is_retried_once_on_a_new_one():
    answer = SSE_HEAD + chunked(b"data: 1\n\n")

    async def close_unanswered(writer):  # a keep-alive timeout on the server's side, just as the request came
        writer.transport.abort()

    async def go():
        async with Scripted([answer, close_unanswered, answer]) as srv, HttpClient() as http:
            first = await body_of(await http.post(srv.url, b"{}", {}, 5))
            second = await body_of(await http.post(srv.url, b"{}", {}, 5))
            return first, second, srv.connections
    assert run(go()) == (b"data: 1\n\n", b"data: 1\n\n", 2)


def test_a_new_connection_closed_unanswered_is_not_retried():
    async def close_unanswered(writer):
        writer.transport.abort()

    async def go():
        async with Scripted([close_unanswered, close_unanswered]) as srv, HttpClient() as http:
            with pytest.raises(HttpError, match="closed before an answer"):
                await http.post(srv.url, b"{}", {}, 5)
            return len(srv.requests)
    assert run(go()) == 1  # the request may have run: asking again could run it twice


def test_connection_refused_is_an_http_error():
    async def go():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with HttpClient() as http:
            await http.post(f"http://127.0.0.1:{port}/x", b"{}", {}, 5)
    with pytest.raises(HttpError, match="cannot connect"):
        run(go())


def test_tls_verified_and_a_silent_tls_server_is_a_connect_timeout(tmp_path):
    paths = make_ca(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(paths["cert"], paths["key"])
    client_ctx = ssl.create_default_context(cafile=str(paths["ca"]))
    answer = SSE_HEAD + chunked(b"data: secure\n\n")

    async def go():
        async with Scripted([answer], server_ctx) as srv, HttpClient(client_ctx) as http:
            body = await body_of(await http.post(srv.url, b"{}", {}, 5))
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never handshakes
        port = silent.sockets[0].getsockname()[1]
        try:
            async with HttpClient(client_ctx) as http:
                with pytest.raises(ConnectTimeout):
                    await http.post(f"https://127.0.0.1:{port}/x", b"{}", {}, 0.3)
        finally:
            silent.close()
        async with Scripted([answer], server_ctx) as srv, HttpClient() as http:  # public CAs only: refused
            with pytest.raises(HttpError, match="cannot connect"):
                await http.post(srv.url, b"{}", {}, 5)
        return body
    assert run(go()) == b"data: secure\n\n"


def test_a_reader_that_stops_at_done_still_leaves_the_connection_reusable():
    async def done_then_terminator(writer):
        writer.write(SSE_HEAD + b"e\r\ndata: [DONE]\n\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the body's end comes after the reader has stopped
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def go():
        async with Scripted([done_then_terminator, done_then_terminator]) as srv, HttpClient() as http:
            for _ in range(2):
                resp = await http.post(srv.url, b"{}", {}, 5)
                async with resp:
                    assert await resp.chunk() == b"data: [DONE]\n\n"
                await asyncio.sleep(0.2)
            return srv.connections
    assert run(go()) == 1


def test_a_released_answer_that_never_ends_costs_its_connection(monkeypatch):
    monkeypatch.setattr("bridge.httpanswer.DRAIN_S", 0.1)
    answer = SSE_HEAD + chunked(b"data: 1\n\n")

    async def endless(writer):
        writer.write(SSE_HEAD + b"9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def go():
        async with Scripted([endless, answer]) as srv, HttpClient() as http:
            async with await http.post(srv.url, b"{}", {}, 5) as resp:
                await resp.chunk()
            await asyncio.sleep(0.3)
            body = await body_of(await http.post(srv.url, b"{}", {}, 5))
            return body, srv.connections
    assert run(go()) == (b"data: 1\n\n", 2)


def test_bytes_on_an_idle_connection_retire_it():
    answer = SSE_HEAD + chunked(b"data: 1\n\n")

    async def answer_then_babble(writer):
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # an answer to nothing
        await writer.drain()

    async def go():
        async with Scripted([answer_then_babble, answer]) as srv, HttpClient() as http:
            first = await body_of(await http.post(srv.url, b"{}", {}, 5))
            await asyncio.sleep(0.2)
            second = await body_of(await http.post(srv.url, b"{}", {}, 5))
            return first, second, srv.connections
    assert run(go()) == (b"data: 1\n\n", b"data: 1\n\n", 2)


@pytest.mark.parametrize("url, headers, why", [
    ("ftp://127.0.0.1/x", {}, "not an http"),
    ("http://127.0.0.1:9/x", {"Authorization": "Bearer k\r\nX-Evil: 1"}, "line break"),
    ("http://127.0.0.1:9/x", {"Authorization": "Bearer ключ"}, "cannot carry"),
])
def test_a_request_that_cannot_be_sent_as_asked_is_a_clear_error_before_connecting(url, headers, why):
    async def go():
        async with HttpClient() as http:
            await http.post(url, b"{}", headers, 5)
    with pytest.raises(HttpError, match=why):
        run(go())
