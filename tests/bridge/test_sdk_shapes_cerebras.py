"""What the bridge sends a Cerebras tier, checked against cerebras-cloud-sdk's chat-completion TypedDicts with
unknown keys refused at any depth, as test_sdk_shapes.py does for OpenAI; the SDK types a tool's `parameters` as
any dict, so the schema keywords Cerebras refuses are checked beside it. And the stand-in tier's stream, read as
the SDK's `ChatChunkResponse`."""
import json

import pytest
from pydantic import TypeAdapter, ValidationError

from bridge.providers import openai_compat
from bridge.providers.schemas import translate
from tests.bridge.harness import fake_tiers
from tests.bridge.sdk_bodies import device_rounds, materialised, offered, schema_keys, sse_payloads, strict
from tests.fakes.openai_server import Reply

# docs/bridge.md "Providers": tool requests carrying these have been answered with a 400 "Unsupported JSON
# schema fields"
_REFUSED = {"minItems", "maxItems", "format"}


@pytest.fixture(scope="module")
def cerebras_request():
    strict("cerebras.cloud.sdk.types")
    from cerebras.cloud.sdk.types.chat.completion_create_params import CompletionCreateParams
    return TypeAdapter(CompletionCreateParams)


def _keywords(tools: list[dict]) -> set[str]:
    return set().union(*(schema_keys(t["function"]["parameters"]) for t in tools))


def test_the_bodies_a_cerebras_tier_is_sent_are_requests_of_its_sdk_without_refused_keywords(
        tmp_path, monkeypatch, cerebras_request):
    monkeypatch.setattr(openai_compat, "_COMPLETION_TOKENS_HOSTS", ("127.0.0.1",))  # as api.cerebras.ai gets it
    bodies = device_rounds(tmp_path, "openai", "cerebras", max_tokens=500)
    for body in bodies:
        assert body["max_completion_tokens"] == 500
        materialised(cerebras_request.validate_python(body))
        assert not _REFUSED & _keywords(body["tools"])
    i2c_write = next(t for t in bodies[2]["tools"] if t["function"]["name"] == "i2c_write")
    assert i2c_write["function"]["parameters"]["properties"]["data"]["description"].endswith("at most 32 items")


def test_cerebras_is_offered_no_array_length_or_format_in_any_tool(tmp_path):
    sets = offered(tmp_path)
    for what, tools in sets.items():
        assert not _REFUSED & _keywords(translate("cerebras", tools)), what
    assert _REFUSED <= _keywords(sets["every mode"] + sets["CALLER"])  # what was written had them


@pytest.mark.parametrize("bad", [
    {"messages": [{"role": "tool", "content": "ok", "tool_call": "c1"}]},
    {"tools": [{"type": "function", "function": {"name": "a", "parameters": {}, "strict_": True}}]},
    {"stream_options": {"include_usage": True, "usage": True}},
])
def test_the_cerebras_check_refuses_a_misspelt_field_at_any_depth(cerebras_request, bad):
    with pytest.raises(ValidationError):
        materialised(cerebras_request.validate_python({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                       **bad}))


def test_the_stand_in_tiers_stream_is_cerebras_chunks():
    from cerebras.cloud.sdk import Cerebras
    from cerebras.cloud.sdk.types.chat.chat_completion import ChatChunkResponse
    calls = [("gpio_write", {"pin": "relay", "value": 1}), ("gpio_read", {"pin": "door"})]
    with fake_tiers(lambda req: Reply(text="On it.", calls=calls, arg_piece_len=4)) as (fake,):
        client = Cerebras(api_key="k", base_url=fake.base_url.removesuffix("/v1"), max_retries=0,
                          warm_tcp_connection=False)  # its default first asks the server on another path
        with client.chat.completions.with_streaming_response.create(
                model="gpt-oss-120b", messages=[{"role": "user", "content": "hi"}], stream=True,
                stream_options={"include_usage": True}) as resp:
            payloads = sse_payloads("\n".join(resp.iter_lines()).encode())
    chunks = []
    for payload in payloads:
        chunk = json.loads(payload)
        # The stand-in writes argument pieces as OpenAI does, `type` only in a call's first piece (the openai
        # SDK's type has it optional); Cerebras's type wants it in every piece. The bridge reads neither.
        for call in (chunk["choices"] or [{}])[0].get("delta", {}).get("tool_calls") or ():
            call.setdefault("type", "function")
        chunks.append(ChatChunkResponse.model_validate(chunk))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    args: dict[int, str] = {}
    for call in (call for d in deltas for call in d.tool_calls or ()):
        args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
    assert "".join(d.content or "" for d in deltas) == "On it."
    assert [json.loads(a) for a in args.values()] == [a for _, a in calls]
    assert chunks[-2].choices[0].finish_reason == "tool_calls" and chunks[-1].usage.total_tokens


def test_an_error_inside_a_cerebras_stream_is_judged_by_its_status_code_as_the_sdk_judges_it():
    # cerebras-cloud-sdk (_streaming.py, _exceptions.py): a `data:` payload with "error" after the 200 is raised
    # as the error of the payload's own `status_code`; here a rate limit, to be waited out, not a tier failure
    import asyncio

    from cerebras.cloud.sdk import Cerebras, RateLimitError

    from bridge.httpclient import HttpClient
    from bridge.providers.base import ProviderError
    from bridge.routing.hedge import limited
    from tests.fakes.recorded import Replay
    started = {"id": "chatcmpl-c1", "object": "chat.completion.chunk", "created": 1733312345,
               "model": "gpt-oss-120b", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    error = {"error": {"message": "Tokens per minute limit exceeded - too many tokens processed.",
                       "type": "too_many_tokens_error", "param": "quota", "code": "token_quota_exceeded"},
             "status_code": 429}
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in (started, error))

    async def go():
        server = Replay((200, "text/event-stream", body))
        url = await server.start()
        try:
            def sdk():
                client = Cerebras(api_key="k", base_url=url.removesuffix("/v1"), max_retries=0,
                                  warm_tcp_connection=False)
                with pytest.raises(RateLimitError):
                    for _ in client.chat.completions.create(model="gpt-oss-120b", stream=True,
                                                            messages=[{"role": "user", "content": "hi"}]):
                        pass
            await asyncio.to_thread(sdk)
            async with HttpClient() as http:
                provider = openai_compat.OpenAICompatProvider(http, url, "gpt-oss-120b")
                with pytest.raises(ProviderError) as info:
                    async for _ in provider.stream_chat([{"role": "user", "content": "hi"}]):
                        pass
                return info.value
        finally:
            await server.close()
    err = asyncio.run(go())
    assert err.status == 429 and limited(err) and "Tokens per minute limit exceeded" in err.message
