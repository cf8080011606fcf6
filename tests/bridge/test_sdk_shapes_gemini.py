"""What the bridge sends a Gemini tier (its OpenAI-compatible endpoint, which makes each tool a function
declaration), checked against google-genai's pydantic `types.FunctionDeclaration` and `types.Schema`, read by
their JSON names, unknown fields refused. Where those types are looser than the Gemini API, the API's rule is
checked beside them, with its source. The tools: every firmware config's, the conformance suite's BAD tool and a
/v1 caller's (sdk_bodies.py); the bodies: whole device rounds, also checked against the `openai` SDK's request."""
import asyncio
import json
import re
import warnings

import pytest
from google.genai import types as genai
from pydantic import ValidationError

from bridge.config import Tier
from bridge.httpclient import HttpClient
from bridge.providers import provider_factory
from bridge.providers.schemas import problems, translate
from tests.bridge.harness import fake_tiers
from tests.bridge.sdk_bodies import CALLER, device_rounds, materialised, offered, openai_request
from tests.fakes.openai_server import Reply

# FunctionDeclaration.name: "Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain
# underscores, dots, colons and dashes, with a maximum length of 128."
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
# types.Schema is looser than the Gemini API in three ways, checked beside it: an unknown `type` passes with a
# warning; it has Vertex AI's additionalProperties, defs and ref (the SDK refuses additionalProperties itself
# outside Vertex AI: _transformers.py, "not in Gemini Developer API mode"); and `format` is any string, where the
# API's discovery document lists "for NUMBER type: float, double for INTEGER type: int32, int64 for STRING type:
# enum, date-time" and others are a 400 "format: only 'enum' and 'date-time' are supported for STRING type"
# (google-gemini/gemini-cli#3178). Its `enum` is a list of strings, as the API's "enum only on strings" wants.
_TYPES = set(genai.Type) - {genai.Type.TYPE_UNSPECIFIED}
_FORMATS = {genai.Type.NUMBER: {"float", "double"}, genai.Type.INTEGER: {"int32", "int64"},
            genai.Type.STRING: {"enum", "date-time"}}


def gemini_problems(fn: dict) -> list[str]:
    """What Gemini refuses in the `function` of one tool of a request, by google-genai's types and the API."""
    name = fn.get("name")
    out = [] if _NAME.fullmatch(name) else [f"{name}: name outside Gemini's rule"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "text is not a valid Type": caught below
            decl = genai.FunctionDeclaration.model_validate(fn, by_alias=True, by_name=False)
    except (ValidationError, AttributeError) as e:  # AttributeError: a list of types ('list' has no .upper)
        return [*out, f"{name}: {e}"]
    if decl.parameters is not None:
        _schema_problems(decl.parameters, name, out)
    return out


def _schema_problems(s: genai.Schema, at: str, out: list[str]) -> None:
    if s.type not in _TYPES and not (s.type is None and s.any_of):
        out.append(f"{at}: type {s.type!r} is none of Gemini's")
    if s.enum is not None and s.type != genai.Type.STRING:
        out.append(f"{at}: enum on a {s.type} (Gemini: strings only)")
    if s.format is not None and s.format not in _FORMATS.get(s.type, ()):
        out.append(f"{at}: format {s.format!r} on a {s.type} (Gemini refuses it)")
    if s.type == genai.Type.OBJECT and not s.properties:
        out.append(f"{at}: object without properties ('should be non-empty for OBJECT type')")
    out += [f"{at}: {k} (Vertex AI only)" for k in ("additional_properties", "defs", "ref")
            if getattr(s, k) is not None]
    subs = [*(s.properties or {}).items(), *([("[]", s.items)] if s.items else []), *enumerate(s.any_of or ())]
    for key, sub in subs:
        _schema_problems(sub, f"{at}.{key}", out)


def test_gemini_takes_every_tool_the_bridge_offers_it_as_a_function_declaration_of_its_sdk(tmp_path):
    for what, tools in offered(tmp_path).items():
        for tool in translate("gemini", tools):
            assert set(tool) == {"type", "function"} and tool["type"] == "function"
            assert gemini_problems(tool["function"]) == [], what
        for tool in tools:  # the bridge's own rules see what the SDK's types see
            assert bool(problems("gemini", tool)) == bool(gemini_problems(tool["function"])), tool
    assert gemini_problems(CALLER["function"])  # as the caller wrote it, Gemini would refuse it


def test_the_bodies_a_gemini_tier_is_sent_are_openai_requests_whose_tools_gemini_takes(tmp_path):
    bodies = device_rounds(tmp_path, "openai", "gemini")
    for body in bodies:
        materialised(openai_request().validate_python(body))
        assert [p for t in body["tools"] for p in gemini_problems(t["function"])] == []
    assert any("parameters" not in t["function"] for t in bodies[2]["tools"])  # no parameters: none sent


def test_a_v1_callers_tool_reaches_a_gemini_tier_as_gemini_takes_it_and_its_call_comes_back_whole():
    # Gemini answers a `format: "uri"` with a 400, and the bridge sent an enum of numbers without a type as a
    # string enum, which it refuses too: such formats and enums go in words, the enum's type kept
    args = {"url": "https://example.org/a", "retries": 3, "headers": json.dumps({"Accept": "text/html"})}
    with fake_tiers(lambda req: Reply(calls=[("fetch_page", args)])) as (fake,):
        async def go():
            async with HttpClient() as http:
                tier = Tier("g", fake.base_url, "gemini-2.5-flash", dialect="gemini")
                chat = [{"role": "user", "content": "fetch example.org/a"}]
                return [ev async for ev in provider_factory(http)(tier).stream_chat(chat, [CALLER])]
        events = asyncio.run(go())
    (tool,) = fake.requests[0]["tools"]
    assert gemini_problems(tool["function"]) == []
    props = tool["function"]["parameters"]["properties"]
    assert props["url"]["description"] == "format uri" and props["since"]["format"] == "date-time"
    assert props["retries"] == {"type": "integer", "minimum": 0, "maximum": 3, "default": 1,
                                "description": "one of 0, 1, 3"}
    (call,) = [ev.call for ev in events if ev.kind == "call"]
    assert call.args == {**args, "headers": {"Accept": "text/html"}}  # a dict of any keys went as JSON text


def _params(**prop) -> dict:
    return {"type": "object", "properties": {"a": prop}}


@pytest.mark.parametrize("fn, found", [
    ({"name": "1wire_read"}, "name"),
    ({"name": "f", "parameters": _params(type="string", minItem=1)}, "Extra inputs"),
    ({"name": "f", "parameters": _params(type=["string", "null"])}, "list"),
    ({"name": "f", "parameters": _params(type="text")}, "none of"),
    ({"name": "f", "parameters": _params(type="integer", enum=["0"])}, "enum on"),
    ({"name": "f", "parameters": _params(type="string", enum=[0, 1])}, "valid string"),
    ({"name": "f", "parameters": _params(type="string", format="uri")}, "format"),
    ({"name": "f", "parameters": _params(type="object")}, "without properties"),
    ({"name": "f", "parameters": {**_params(type="string"), "additionalProperties": False}}, "Vertex"),
])
def test_the_gemini_check_refuses_what_gemini_refuses(fn, found):
    assert found in " ".join(gemini_problems(fn))
