"""What the bridge sends an Ollama tier (/v1), checked against the `ollama` package's pydantic `Tool`: the struct
Ollama decodes /v1 tools into (api.Tool). It ignores unknown keys, so keys are compared with its fields here;
where it differs from the server, the server's rule is checked instead, with its source. The rest of a /v1 body
and stream is OpenAI's wire, checked with the `openai` SDK's types: `ollama.ChatRequest` and `ChatResponse` are
the native /api/chat, whose messages and NDJSON stream differ from /v1, and the bridge does not use it."""
import ollama
import pytest
from openai.types.chat import ChatCompletionChunk
from pydantic import ValidationError

from bridge.providers.schemas import translate
from tests.bridge.sdk_bodies import device_rounds, materialised, offered, openai_request, sse_payloads
from tests.bridge.test_local_servers import ollama_tools
from tests.fakes import recorded

_PARAMS = ollama.Tool.Function.Parameters
# The SDK's Property has no properties or required: Ollama reads them on a nested object since late 2025
# (api/types.go ToolProperty, ollama/ollama#13508), older versions ignore them; either way, no 400. Its `type`
# takes a list, which older versions refused with a 400 "cannot unmarshal array" (ollama/ollama#10328): checked
# beside it. Its `items` (Go: `any`) goes to the model as written, so any keyword is taken there.
_NESTED = {"properties", "required"}


def _fields(model) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def ollama_problems(tool: dict) -> list[str]:
    """What Ollama drops or refuses in one tool of a request, by the `ollama` package's Tool."""
    fn = tool.get("function") or {}
    at = fn.get("name")
    try:
        ollama.Tool.model_validate(tool)
    except ValidationError as e:
        return [f"{at}: {e}"]
    params = fn.get("parameters") or {}
    out = [f"{at}: {k!r} (no field of {model.__qualname__})" for data, model in
           ((tool, ollama.Tool), (fn, ollama.Tool.Function), (params, _PARAMS)) for k in data
           if k not in _fields(model)]
    for key, prop in (params.get("properties") or {}).items():
        _property_problems(prop, f"{at}.{key}", out)
    return out


def _property_problems(p: dict, at: str, out: list[str]) -> None:
    try:
        _PARAMS.Property.model_validate(p)
    except ValidationError as e:
        out.append(f"{at}: {e}")
    out += [f"{at}: {k!r} (no field of Property)" for k in p if k not in _fields(_PARAMS.Property) | _NESTED]
    if not isinstance(p.get("type", ""), str):
        out.append(f"{at}: a list of types")
    for key, sub in (p.get("properties") or {}).items():
        _property_problems(sub, f"{at}.{key}", out)


def test_ollama_takes_every_tool_the_bridge_offers_it_as_a_tool_of_its_sdk(tmp_path):
    for what, tools in offered(tmp_path).items():
        assert [p for t in translate("ollama", tools) for p in ollama_problems(t)] == [], what


def test_the_bodies_an_ollama_tier_is_sent_are_openai_requests_whose_tools_ollama_takes(tmp_path):
    for body in device_rounds(tmp_path, "openai", "ollama"):
        materialised(openai_request().validate_python(body))  # Ollama's /v1 is OpenAI's wire
        assert [p for t in body["tools"] for p in ollama_problems(t)] == []


@pytest.mark.parametrize("params, found", [
    ({"type": "object", "properties": {"a": {"type": "string", "descriptio": "x"}}}, "'descriptio'"),
    ({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}, "list of types"),
    ({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}}, "'minimum'"),
    ({"type": "object", "properties": {}, "additionalProperties": False}, "'additionalProperties'"),
    ({"type": "array", "properties": {}}, "literal_error"),
])
def test_the_ollama_check_refuses_what_ollama_drops_or_refuses(params, found):
    assert found in " ".join(ollama_problems({"type": "function", "function": {"name": "f", "parameters": params}}))


def test_the_ollama_streams_replayed_are_openai_chunks_but_where_older_ollama_left_out_the_index():
    for body in (recorded.OLLAMA_PARALLEL[2], ollama_tools(indexed=True, one_chunk=False),
                 ollama_tools(indexed=True, one_chunk=True)):
        for payload in sse_payloads(body):
            ChatCompletionChunk.model_validate_json(payload)
    # what older Ollama sent (test_local_servers.py): calls without `index`, which OpenAI's type requires
    first = sse_payloads(ollama_tools(indexed=False, one_chunk=True))[0]
    with pytest.raises(ValidationError, match=r"tool_calls\.0\.index\n  Field required"):
        ChatCompletionChunk.model_validate_json(first)
