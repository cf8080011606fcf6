"""What the bridge really sends a tier for whole device rounds, the tools it may be asked to pass on, and the
helpers that check them against a provider SDK's published types (tests/bridge/test_sdk_shapes*.py)."""
import functools
import importlib
import json
import pkgutil
from collections.abc import Iterator

from pydantic import TypeAdapter
from typing_extensions import is_typeddict

from bridge.config import Tier
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, firmware_manifest, run
from tests.bridge.test_provider_rules import BAD, CONFIGS, EXTRA, every_tool, manifest_of
from tests.fakes.openai_server import Reply


def strict(package: str) -> None:
    """Every TypedDict of the SDK's request types refuses keys it does not declare (pydantic ignores them
    by default), and may hold the file types of upload params (never in our bodies)."""
    base = importlib.import_module(package)
    for info in pkgutil.walk_packages(base.__path__, package + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and is_typeddict(value):
                value.__pydantic_config__ = {"extra": "forbid", "arbitrary_types_allowed": True}


@functools.cache
def openai_request() -> TypeAdapter:
    """The official `openai` SDK's streamed chat-completion request, unknown keys refused at any depth."""
    strict("openai.types.chat")
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming
    return TypeAdapter(CompletionCreateParamsStreaming)


def materialised(value):
    """pydantic validates an Iterable[...] field lazily, as it is iterated: iterate every one."""
    if isinstance(value, dict):
        return {k: materialised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, Iterator)) or type(value).__name__ == "ValidatorIterator":
        return [materialised(v) for v in value]
    return value


def device_rounds(tmp_path, provider: str, dialect: str | None = None, max_tokens: int | None = None) -> list[dict]:
    """The bodies the bridge sent a tier of this provider and dialect for: a round whose model calls a tool (one
    of them invalid, so a repair turn follows) and then asks for every family (the next turn offers the whole
    manifest of a device with every pin mode, a sensor and an I2C bus), the device's next round carrying the
    results, and a text-only round. `max_tokens`: the tier's ceiling as wisp.toml would set it."""
    manifest = firmware_manifest(tmp_path, CONFIGS["every mode"], **EXTRA["every mode"])
    families = ("routines", "schedule", "system", "memory", "i2c")
    script = iter([Reply(text="On it.", calls=[("gpio_write", {"pin": "relay", "value": 1}),
                                               ("gpio_write", {"pin": "garage", "value": 1})]),
                   Reply(calls=[("more_tools", {"family": f}) for f in families]),
                   Reply(text="Only the relay exists; it is on."),
                   Reply(text="The relay is on."),
                   Reply(text="Hello.")])
    cap = {"max_tokens": max_tokens, "max_tokens_set": True} if max_tokens else {}
    with fake_tiers(lambda req: next(script)) as (fake,):
        tier = Tier("premium", fake.base_url, "model-x", "key-1", provider=provider, dialect=dialect, **cap)
        cfg = config([tier], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                ctx.manifests.update(manifest["id"], json.dumps(manifest).encode())
                await ask(ctx, "a1", manifest["id"], hash=manifest["hash"])
                await ask(ctx, "a2", manifest["id"], hash=manifest["hash"], round=1, msgs=[
                    {"r": "user", "t": "switch the relay on"},
                    {"r": "asst", "t": "On it.", "calls": [{"cid": "c1", "tool": "gpio_write",
                                                          "args": {"pin": "relay", "value": 1}}]},
                    {"r": "tool", "cid": "c1", "t": "ok: relay=1"}])
                await ask(ctx, "a3", manifest["id"], hash=manifest["hash"], msgs=[
                    {"r": "user", "t": "hello"}, {"r": "asst", "t": "Hi."}, {"r": "user", "t": "hello again"}])
        run(go())
    assert len(fake.requests) == 5, fake.requests
    names = {t["function"]["name"] if "function" in t else t["name"] for t in fake.requests[2]["tools"]}
    assert {"routine_define", "schedule_add", "publish", "memory_list", "i2c_write"} <= names  # every family
    assert len(fake.requests[2]["tools"]) > len(fake.requests[0]["tools"]) > 8
    return fake.requests


# A /v1 caller's tool, passed through to the tier: a URL with format "uri", an enum of numbers without a type, an
# optional value as anyOf with null, $defs and $ref, a dict of any keys, a nested object, array lengths, titles
# and defaults, as MCP servers and pydantic write them (the firmware writes none of these)
CALLER = {"type": "function", "function": {"name": "fetch_page", "description": "Fetch a page.", "parameters": {
    "type": "object", "title": "FetchArgs", "required": ["url"],
    "$defs": {"Mode": {"type": "string", "enum": ["text", "html"]}},
    "properties": {
        "url": {"type": "string", "format": "uri", "minLength": 1, "title": "Url"},
        "retries": {"enum": [0, 1, 3], "default": 1},
        "since": {"type": "string", "format": "date-time"},
        "size": {"type": "integer", "format": "int32", "minimum": 1},
        "proxy": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "mode": {"$ref": "#/$defs/Mode"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "window": {"type": "object", "required": ["w"], "additionalProperties": False,
                   "properties": {"w": {"type": "integer", "exclusiveMinimum": 0}}},
        "notify": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1,
                   "maxItems": 3}}}}}


def offered(tmp_path) -> dict[str, list[dict]]:
    """Every tool set the SDK checks cover: each firmware config of the conformance suite with every family
    loaded, its BAD tool (test_provider_rules.py), and CALLER."""
    return {**{c: every_tool(manifest_of(tmp_path, c)) for c in CONFIGS}, "BAD": [BAD], "CALLER": [CALLER]}


def schema_keys(s: dict) -> set[str]:
    """The keywords of a JSON schema and of every schema in it (not its property names)."""
    subs = [*(s.get("properties") or {}).values(), s.get("items"), *(s.get("anyOf") or ())]
    return set(s).union(*(schema_keys(sub) for sub in subs if isinstance(sub, dict)))


def sse_payloads(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body before its `[DONE]`."""
    payloads = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert payloads.pop() == "[DONE]"
    return payloads
