"""A local server that loads its model on demand, as Ollama does: no headers until the model is in memory, and
the load aborted when the request that started it goes away (llm/server.go WaitUntilRunning on that request's
context: "client connection closed before server finished loading, aborting load"). A load longer than the
bridge's first-token time must still complete, so that the next ask finds the model loaded."""
import asyncio
import json

import pytest

from bridge.config import LOCAL_LOAD_WAIT_S, Tier, load_config
from bridge.httpclient import HttpClient
from bridge.providers import provider_factory
from bridge.providers.base import ProviderError

LOAD_S = 0.8  # the model's load time here; the bridge gives up on the first answer after FIRST_S
FIRST_S = 0.25
REPLY = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
         b'"delta":{"role":"assistant","content":"ready"},"finish_reason":null}]}\n\n'
         b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
         b'"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')


class LoadingServer:
    """Loopback HTTP/1.1 server: the first request starts the load; the load ends early, model not loaded, if
    that request's connection closes first. Requests during a load wait for it; once loaded, each is answered."""

    def __init__(self):
        self.loaded = False
        self.loads_started = 0
        self.loads_aborted = 0
        self._load: asyncio.Task | None = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        if self._load:
            self._load.cancel()

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                         .split(b":")[1])
            json.loads(await reader.readexactly(length))
            if not self.loaded:
                starter = self._load is None or self._load.done()
                if starter:
                    self.loads_started += 1
                    self._load = asyncio.ensure_future(asyncio.sleep(LOAD_S))
                gone = asyncio.ensure_future(reader.read(1))  # b"": the client closed its connection
                await asyncio.wait([self._load, gone], return_when=asyncio.FIRST_COMPLETED)
                if not self._load.done():
                    if starter:
                        self._load.cancel()
                        self.loads_aborted += 1
                    return
                gone.cancel()
                self.loaded = not self._load.cancelled()
                if not self.loaded:
                    return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(REPLY), REPLY))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_loaded(self, within_s: float) -> bool:
        for _ in range(int(within_s / 0.05)):
            if self.loaded:
                return True
            await asyncio.sleep(0.05)
        return self.loaded


def tier(url: str, load_wait_s: float) -> Tier:
    return Tier("local", url.removesuffix("/chat/completions"), "qwen2.5:7b", first_token_timeout_s=FIRST_S,
                load_wait_s=load_wait_s)


async def ask(provider) -> str:
    text = ""
    async for ev in provider.stream_chat([{"role": "user", "content": "hi"}]):
        text += ev.text
    return text


def test_a_load_longer_than_the_first_token_time_completes_for_the_next_ask():
    async def main():
        async with LoadingServer() as srv, HttpClient() as http:
            provider = provider_factory(http)(tier(srv.url, load_wait_s=5))
            with pytest.raises(ProviderError) as e:
                await ask(provider)
            assert e.value.kind == "timeout" and "no first token" in e.value.message
            assert await srv.wait_loaded(LOAD_S * 3), "the load was aborted with the abandoned request"
            assert await ask(provider) == "ready"
            assert (srv.loads_started, srv.loads_aborted) == (1, 0)
    asyncio.run(main())


def test_a_hedge_that_wins_does_not_abort_the_load():
    async def main():
        async with LoadingServer() as srv, HttpClient() as http:
            provider = provider_factory(http)(tier(srv.url, load_wait_s=5))
            attempt = asyncio.ensure_future(ask(provider))
            await asyncio.sleep(FIRST_S / 2)
            attempt.cancel()  # what stream_turn does to the losers
            with pytest.raises(asyncio.CancelledError):
                await attempt
            assert await srv.wait_loaded(LOAD_S * 3)
            assert await ask(provider) == "ready"
    asyncio.run(main())


def test_without_load_wait_a_given_up_request_is_closed_at_once():
    # a cloud tier (load_wait_s 0): nothing waits in the background; the server sees the client go
    async def main():
        async with LoadingServer() as srv, HttpClient() as http:
            provider = provider_factory(http)(tier(srv.url, load_wait_s=0))
            with pytest.raises(ProviderError):
                await ask(provider)
            await asyncio.sleep(0.1)
            assert srv.loads_aborted == 1 and not srv.loaded
    asyncio.run(main())


def test_one_request_waits_per_tier_and_closing_the_client_ends_it():
    async def main():
        async with LoadingServer() as srv:
            http = HttpClient()
            provider = provider_factory(http)(tier(srv.url, load_wait_s=5))
            for _ in range(3):
                with pytest.raises(ProviderError):
                    await ask(provider)
            assert len(http._kept) == 1
            await http.close()  # the bridge stopping: the waiting request goes, so does the load it holds
            await asyncio.sleep(0.1)
            assert not http._kept and srv.loads_aborted == 1 and not srv.loaded
    asyncio.run(main())


def test_the_local_tier_waits_for_a_load_by_default_and_the_others_do_not(tmp_path):
    cfg = tmp_path / "wisp.toml"
    cfg.write_text('[tiers.local]\nbase_url = "http://127.0.0.1:11434/v1"\nmodel = "qwen2.5:7b"\n'
                   '[tiers.lan]\nbase_url = "http://192.0.2.7:8080/v1"\nmodel = "m"\nload_wait_s = 120\n'
                   '[tiers.cloud]\nbase_url = "https://api.example.com/v1"\nmodel = "m"\n')
    tiers = load_config(str(cfg), {}).tiers
    assert (tiers["local"].load_wait_s, tiers["lan"].load_wait_s, tiers["cloud"].load_wait_s) \
        == (LOCAL_LOAD_WAIT_S, 120, 0)
    assert load_config(None, {"WISP_LOCAL_URL": "http://127.0.0.1:11434/v1"}).tiers["local"].load_wait_s \
        == LOCAL_LOAD_WAIT_S
    cfg.write_text('[tiers.local]\nbase_url = "http://127.0.0.1:11434/v1"\nmodel = "m"\nload_wait_s = -1\n')
    with pytest.raises(Exception, match="load_wait_s must be a number >= 0"):
        load_config(str(cfg), {})
