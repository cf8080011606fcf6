"""The local tier's servers as they really answer: llama-server, Ollama (/v1) and vLLM, byte for byte.

Our fake tier accepts anything and streams one shape; each server has its own. The streams and error bodies
below are written the way each server's source writes them (read at these places):

- llama-server: tools/server/server-common.cpp `format_oai_sse` ("data: " + compact JSON + "\\n\\n"),
  server-task.cpp `to_json_oaicompat_chat_stream` (a role chunk, one chunk per diff, a finish chunk, then,
  with include_usage, `"choices":[]` with usage and `timings`), common/chat.cpp
  `common_chat_msg_diff_to_json_oaicompat` (`id` and `type` only in a call's first delta); errors are
  `format_error_response` {"code","message","type"} wrapped in {"error": ...}: the HTTP body, and since the
  HTTP rewrite (server-context.cpp `handle_completions_impl`) `data: {"error": ...}` mid-stream. Before it,
  server.cpp sent `server_sent_event(sink, "error", error_data)`: an `error: {...}` line, then `data: [DONE]`.
- Ollama: middleware/openai.go `ChatWriter.writeResponse`, openai/openai.go `toChunk` / `FinishChunk`
  (whole calls, ids "call_" + 8 characters, `index` from the call, "tool_calls" once a call was sent; older
  versions: no `index` key and "stop"); errors: openai.go `NewError` {"error":{"message","type","param",
  "code":null}} from server/routes.go's "model '%s' not found"; the native API's plain {"error": "..."}.
- vLLM: protocol.py `DeltaToolCall` serialised with exclude_unset (`id` and `type` only in the first delta,
  `function` without `arguments` there), hermes parser argument pieces; errors: `ErrorResponse`
  {"object":"error","message","type","param","code"} (0.4-0.10, bare as an HTTP body; vLLM-derived servers
  stream it bare too), mid-stream `create_streaming_error_response` {"error": {...,"code":400}}.
"""
import json
from pathlib import Path

import pytest

from bridge.config import Tier
from bridge.httpclient import HttpClient
from bridge.providers.base import SSEDecoder
from bridge.providers.openai_compat import OpenAICompatProvider, ProviderError
from tests.bridge.harness import ask, bridge_ctx, config, manifest, run
from tests.fakes.recorded import Replay

PORCH = '{"pin":"porch_light","value":1}'
FAN = '{"pin":"fan","value":1}'
WANT = [{"pin": "porch_light", "value": 1}, {"pin": "fan", "value": 1}]


def sse(*payloads) -> bytes:
    """Compact JSON per `data:` line, as nlohmann's dump(-1), Go's json.Marshal and pydantic write it."""
    return b"".join(b"data: " + (p if isinstance(p, bytes) else json.dumps(p, separators=(",", ":"),
                                                                           ensure_ascii=False).encode())
                    + b"\n\n" for p in payloads)


# ---- llama-server ----------------------------------------------------------------------------------------

def _llama(delta: dict | None, finish=None, **extra) -> dict:
    choices = [] if delta is None else [{"finish_reason": finish, "index": 0, "delta": delta}]
    return {"choices": choices, "created": 1762593253, "id": "chatcmpl-DHvcEyFobkuV4Xu1QSYo4bqNv18TDqaA",
            "model": "qwen2.5-7b-instruct", "system_fingerprint": "b6881-8b11deea4",
            "object": "chat.completion.chunk", **extra}


def _llama_call(index: int, args: str, cid: str | None = None, name: str | None = None) -> dict:
    call: dict = {"index": index}
    if cid:
        call.update(id=cid, type="function")
    call["function"] = {**({"name": name} if name else {}), "arguments": args}
    return {"tool_calls": [call]}


LLAMA_TIMINGS = {"prompt_n": 310, "prompt_ms": 2210.5, "prompt_per_token_ms": 7.13, "prompt_per_second": 140.2,
                 "predicted_n": 31, "predicted_ms": 960.2, "predicted_per_token_ms": 30.9,
                 "predicted_per_second": 32.3}
LLAMA_TOOLS = sse(
    _llama({"role": "assistant", "content": None}),
    _llama(_llama_call(0, "", "pWv0Xz1PnQm4Yt2sKc8LrHa6DjF3eBgN", "gpio_write")),
    *[_llama(_llama_call(0, PORCH[k:k + 5])) for k in range(0, len(PORCH), 5)],
    _llama(_llama_call(1, "", "Q8nR2vT5wX1yZ4aB7cD0eF3gH6iJ9kL2", "gpio_write")),
    *[_llama(_llama_call(1, FAN[k:k + 4])) for k in range(0, len(FAN), 4)],
    _llama({}, "tool_calls"),
    _llama(None, usage={"completion_tokens": 31, "prompt_tokens": 310, "total_tokens": 341}, timings=LLAMA_TIMINGS),
    b"[DONE]")

# ---- Ollama ----------------------------------------------------------------------------------------------


def _ollama(delta: dict, finish=None) -> dict:
    return {"id": "chatcmpl-641", "object": "chat.completion.chunk", "created": 1733312345, "model": "qwen2.5:7b",
            "system_fingerprint": "fp_ollama", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _ollama_call(cid: str, args: str, index: int | None) -> dict:
    call = {"id": cid, **({"index": index} if index is not None else {}), "type": "function",
            "function": {"name": "gpio_write", "arguments": args}}
    return call


def ollama_tools(indexed: bool, one_chunk: bool) -> bytes:
    a = _ollama_call("call_x1q2w3e4", PORCH, 0 if indexed else None)
    b = _ollama_call("call_k9z3m7p2", FAN, 1 if indexed else None)
    chunks = ([_ollama({"role": "assistant", "content": "", "tool_calls": [a, b]})] if one_chunk else
              [_ollama({"role": "assistant", "content": "", "tool_calls": [a]}),
               _ollama({"content": "", "tool_calls": [b]})])
    finish = _ollama({}, "tool_calls" if indexed else "stop")
    usage = {**_ollama({}), "choices": [], "usage": {"prompt_tokens": 480, "completion_tokens": 40,
                                                     "total_tokens": 520}}
    return sse(*chunks, finish, usage, b"[DONE]")


# ---- vLLM ------------------------------------------------------------------------------------------------

def _vllm(delta: dict, finish=None, **choice) -> dict:
    c = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **choice}
    return {"id": "chatcmpl-8f2c", "object": "chat.completion.chunk", "created": 1733312345,
            "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [c]}


def _vllm_pieces(index: int, raw: str, n: int) -> list[dict]:
    return [_vllm({"tool_calls": [{"index": index, "function": {"arguments": raw[k:k + n]}}]})
            for k in range(0, len(raw), n)]


VLLM_TOOLS = sse(
    _vllm({"role": "assistant", "content": ""}),
    _vllm({"tool_calls": [{"id": "chatcmpl-tool-5c1b0e7d", "type": "function", "index": 0,
                           "function": {"name": "gpio_write"}}]}),
    *_vllm_pieces(0, '{"pin": "porch_light", "value": 1}', 6),
    _vllm({"tool_calls": [{"id": "chatcmpl-tool-a93f27c4", "type": "function", "index": 1,
                           "function": {"name": "gpio_write"}}]}),
    *_vllm_pieces(1, '{"pin": "fan", ', 6),
    # the finish chunk carries what the parser still held of the last call's arguments
    _vllm({"tool_calls": [{"index": 1, "function": {"arguments": '"value": 1}'}}]}, "tool_calls", stop_reason=None),
    {"id": "chatcmpl-8f2c", "object": "chat.completion.chunk", "created": 1733312345,
     "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [],
     "usage": {"prompt_tokens": 480, "total_tokens": 520, "completion_tokens": 40}},
    b"[DONE]")


def two_pin_manifest() -> dict:
    m = manifest("dev1")
    m["tools"] = json.loads(json.dumps(m["tools"]))
    m["tools"][0]["params"]["properties"]["pin"]["enum"] = ["fan", "porch_light"]
    m["pins"] = {"porch_light": {"mode": "out"}, "fan": {"mode": "out"}}
    return m


def device_round(tmp_path, recording: tuple[int, str, bytes]) -> tuple[list[dict], list[dict]]:
    """(what the device is sent, the requests the server got) for one round against the recording."""
    async def go():
        server = Replay(recording)
        await server.start()
        try:
            async with bridge_ctx(config([Tier("local", server.base_url, "m")], tmp_path)) as ctx:
                ctx.manifests.update("dev1", json.dumps(two_pin_manifest()).encode())
                return await ask(ctx, "r1"), server.requests
        finally:
            await server.close()
    return run(go())


@pytest.mark.parametrize("body", [
    pytest.param(LLAMA_TOOLS, id="llama-server"),
    pytest.param(ollama_tools(indexed=True, one_chunk=False), id="ollama"),
    pytest.param(ollama_tools(indexed=True, one_chunk=True), id="ollama-both-calls-in-one-chunk"),
    pytest.param(ollama_tools(indexed=False, one_chunk=False), id="ollama-older-no-index-finish-stop"),
    pytest.param(ollama_tools(indexed=False, one_chunk=True), id="ollama-older-no-index-one-chunk"),
    pytest.param(VLLM_TOOLS, id="vllm"),
])
def test_each_servers_streamed_calls_reach_the_device_as_the_same_two_instructions(tmp_path, body):
    msgs, requests = device_round(tmp_path, (200, "text/event-stream", body))
    calls = [c for m in msgs for c in m.get("calls", [])]
    assert [(c["tool"], c["args"]) for c in calls] == [("gpio_write", a) for a in WANT], msgs
    assert len({c["cid"] for c in calls}) == 2 and "err" not in msgs[-1] and len(requests) == 1


RECORDINGS = Path(__file__).parent.parent / "fakes" / "recordings"


def test_a_real_llama_servers_round_trip_recorded_acts_and_then_answers(tmp_path):
    # Recorded from llama-server (build b1-0c1e570, jinja on) with the scripted model of tools/scripted_gguf.py,
    # by tools/llama_check.py: one char of arguments per chunk, the call's id and name in its first delta,
    # then a round with no words at all after the tool result.
    called = (RECORDINGS / "llama-server-tool-call.sse").read_bytes()
    msgs, _ = device_round(tmp_path, (200, "text/event-stream", called))
    calls = [c for m in msgs for c in m.get("calls", [])]
    assert [(c["tool"], c["args"]) for c in calls] == [("gpio_write", WANT[0])] and "err" not in msgs[-1], msgs
    silent = (RECORDINGS / "llama-server-no-words.sse").read_bytes()

    async def second_round():
        server = Replay((200, "text/event-stream", silent))
        await server.start()
        try:
            async with bridge_ctx(config([Tier("local", server.base_url, "m")], tmp_path)) as ctx:
                ctx.manifests.update("dev1", json.dumps(two_pin_manifest()).encode())
                return await ask(ctx, "r2", round=1, msgs=[
                    {"r": "user", "t": "it is getting dark"},
                    {"r": "asst", "t": "", "calls": [{"cid": "c1", "tool": "gpio_write", "args": WANT[0]}]},
                    {"r": "tool", "cid": "c1", "t": "ok: porch_light=1"}])
        finally:
            await server.close()
    done = run(second_round())
    assert done[-1]["text"] == "Done: porch_light=1." and "err" not in done[-1], done


# ---- errors ----------------------------------------------------------------------------------------------

CONTEXT = {"code": 400, "message": "the request exceeds the available context size, try increasing it",
           "type": "exceed_context_size_error", "n_prompt_tokens": 4410, "n_ctx": 4096}
STARTED = sse(_llama({"role": "assistant", "content": None}))


def test_sse_decoder_hands_an_error_field_on_as_an_error_payload():
    # server.cpp: std::string(event) + ": " + data.dump(-1, ' ', false, replace) + "\n\n", event "error"
    line = b"error: " + json.dumps(CONTEXT, separators=(",", ":")).encode() + b"\n\n"
    (payload,) = SSEDecoder().feed(line + b"data: [DONE]\n\n")[:1]
    assert json.loads(payload) == {"error": CONTEXT}
    assert json.loads(SSEDecoder().feed(b"error: model crashed\n\n")[0]) == {"error": "model crashed"}


@pytest.mark.parametrize("stream", [
    pytest.param(STARTED + b"error: " + json.dumps(CONTEXT, separators=(",", ":")).encode() + b"\n\n"
                 + b"data: [DONE]\n\n", id="llama-server-old-error-line"),
    pytest.param(STARTED + sse({"error": CONTEXT}), id="llama-server-data-error"),
    pytest.param(sse(_vllm({"role": "assistant", "content": ""}),
                     {"object": "error", "message": "the request exceeds the available context size, try "
                      "increasing it", "type": "BadRequestError", "param": None, "code": 400}, b"[DONE]"),
                 id="vllm-bare-error-object"),
    pytest.param(sse(_vllm({"role": "assistant", "content": ""}),
                     {"error": {"object": "error", "message": "the request exceeds the available context size, "
                                "try increasing it", "type": "BadRequestError", "param": None, "code": 400}},
                     b"[DONE]"), id="vllm-wrapped-error-object"),
])
def test_a_400_reported_inside_the_stream_is_a_refusal_quoting_the_server(tmp_path, stream):
    msgs, requests = device_round(tmp_path, (200, "text/event-stream", stream))
    err = msgs[-1]["err"]
    assert "the request exceeds the available context size" in err, err
    assert "refused the request" in err and "start the server with a larger one (llama-server -c" in err, err
    assert len(requests) == 1  # like an HTTP 400: the same request is not sent again


def test_a_500_inside_the_stream_is_a_failure_quoting_the_server(tmp_path):
    crash = {"code": 500, "message": "Input prompt is too big compared to KV size. Please try increasing KV "
             "size.", "type": "server_error"}
    msgs, requests = device_round(tmp_path, (200, "text/event-stream", STARTED + sse({"error": crash})))
    err = msgs[-1]["err"]
    assert "tier 'local' failed" in err and "Input prompt is too big compared to KV size" in err, err
    assert len(requests) >= 2  # transient, as an HTTP 500 is: asked again


@pytest.mark.parametrize("status, body, says", [
    (400, {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing "
                     "it", "type": "exceed_context_size_error"}}, "longer than the model's context"),
    (404, {"error": {"message": "model 'qwen9:7b' not found", "type": "not_found_error", "param": None,
                     "code": None}}, "check its model name and URL"),
    (404, {"error": "model 'qwen9:7b' not found"}, "check its model name and URL"),
    (404, {"object": "error", "message": "The model `qwen9` does not exist.", "type": "NotFoundError",
           "param": None, "code": 404}, "check its model name and URL"),
    # a model without tool calling (Ollama: server/images.go CheckCapabilities), a vLLM started without it
    (400, {"error": {"message": "registry.ollama.ai/library/gemma3:4b does not support tools", "type": "api_error",
                     "param": None, "code": None}}, "the model cannot call tools: use one that can"),
    (400, {"object": "error", "message": "\"auto\" tool choice requires --enable-auto-tool-choice and "
           "--tool-call-parser to be set", "type": "BadRequestError", "param": None, "code": 400},
     "start vLLM with --enable-auto-tool-choice and the --tool-call-parser of its model"),
], ids=["llama-server-400", "ollama-v1-404", "ollama-native-404", "vllm-404", "ollama-no-tools", "vllm-no-tools"])
def test_each_servers_http_error_body_reaches_the_device_with_its_message(tmp_path, status, body, says):
    msgs, _ = device_round(tmp_path, (status, "application/json", json.dumps(body).encode()))
    err = msgs[-1]["err"]
    message = body.get("message") or (body["error"]["message"] if isinstance(body["error"], dict) else body["error"])
    assert message in err and says in err, err


def test_a_vllm_error_object_sent_with_200_as_json_is_an_http_error_not_malformed():
    body = {"object": "error", "message": "The model `qwen9` does not exist.", "type": "NotFoundError",
            "param": None, "code": 404}

    async def go():
        server = Replay((200, "application/json", json.dumps(body).encode()))
        url = await server.start()
        try:
            async with HttpClient() as http:
                provider = OpenAICompatProvider(http, url, "qwen9", first_token_timeout_s=2)
                return [ev async for ev in provider.stream_chat([{"role": "user", "content": "hi"}])]
        finally:
            await server.close()
    with pytest.raises(ProviderError) as info:
        run(go())
    assert (info.value.kind, info.value.status) == ("http", 404) and "does not exist" in info.value.message
