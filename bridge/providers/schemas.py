"""One translation of tool schemas per provider family, so every request is one the provider accepts.

The bridge's tools are JSON Schema (the device's manifest, or a /v1 caller's). Each family accepts a different
part of it; the rules, with the providers' documents they come from, are in docs/bridge.md ("Providers").
`problems(family, tool)` checks them (the conformance tests use it); `translate(family, tools)` rewrites a
tool list so that no check fails, keeping the meaning where the family can express it and moving the rest
into the description, where the model still reads it.
"""
from __future__ import annotations

import functools
import json
import re
from urllib.parse import urlparse

from bridge import fastjson

FAMILIES = ("openai", "anthropic", "gemini", "ollama", "llamacpp", "cerebras")

# keywords each family's schema reader takes; anything else is dropped (Gemini, Ollama) or kept (the rest)
_GEMINI_KEYS = {"type", "format", "description", "nullable", "enum", "items", "properties", "required",
                "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength", "pattern",
                "anyOf", "propertyOrdering", "default", "title"}
# the formats Gemini takes, per type (its Schema in the API's discovery document); any other is a 400 "format: only
# 'enum' and 'date-time' are supported for STRING type" (google-gemini/gemini-cli#3178)
_GEMINI_FORMATS = {"number": ("float", "double"), "integer": ("int32", "int64"), "string": ("enum", "date-time")}
_OLLAMA_KEYS = {"type", "description", "enum", "items", "properties", "required"}
# what llama.cpp's json-schema-to-grammar cannot turn into grammar (it fails or ignores them silently)
_LLAMACPP_DROP = {"$schema", "uniqueItems", "not", "if", "then", "else", "contains", "dependentSchemas",
                  "patternProperties", "multipleOf"}
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}
_TYPE_WORDS = {"string": "text", "number": "a number", "integer": "an integer", "boolean": "true/false"}
# llama.cpp compiles an empty schema to "an object", not "any value": a list of every type says the latter
_ANY_TYPE = ["string", "number", "boolean", "object", "array", "null"]
# Cerebras documents schema limits for strict mode only, but has answered tool requests carrying these with a
# 400 "Unsupported JSON schema fields" (docs/bridge.md "Providers"); the device checks them anyway
_CEREBRAS_DROP = ("minItems", "maxItems", "format")
# bounds as the description says them where a family drops the keyword (the device still checks the value)
_BOUND_WORDS = {"minimum": "minimum %s", "maximum": "maximum %s", "minItems": "at least %s items",
                "maxItems": "at most %s items", "minLength": "at least %s characters",
                "maxLength": "at most %s characters", "format": "format %s",
                "pattern": "matching the regular expression %s"}
_SHAPE_KEYS = {"type", "anyOf", "oneOf", "allOf", "enum", "const", "$ref", "properties", "items"}
# every family's documented name rule is ASCII: str.isalnum() would also pass "día" or "temp²", which they refuse
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@functools.lru_cache(maxsize=64)  # asked for every attempt; a handful of tiers
def family_for(provider: str, base_url: str, dialect: str | None = None) -> str:
    """The family of a tier: its `dialect` when set, else guessed from the provider and the URL."""
    if dialect:
        return dialect
    if provider == "anthropic":
        return "anthropic"
    host = urlparse(base_url).hostname or ""
    port = urlparse(base_url).port
    if host.endswith("generativelanguage.googleapis.com") or "gemini" in host:
        return "gemini"
    if port == 11434 or "ollama" in host:
        return "ollama"
    if host.endswith("cerebras.ai"):
        return "cerebras"
    return "openai"


# ---- the rules, as checks ------------------------------------------------------------------------------

def problems(family: str, tool: dict) -> list[str]:
    """Every rule of `family` that this OpenAI-shaped tool breaks (empty: the provider accepts it)."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return ["tool is not {'type': 'function', 'function': {'name': ...}}"]
    out = []
    name, params = fn["name"], fn.get("parameters")
    if not _NAME.fullmatch(name):
        out.append(f"{name}: name must be 1-64 of a-z, A-Z, 0-9, _ or -")
    if family == "gemini" and not re.match(r"[A-Za-z_]", name):
        out.append(f"{name}: Gemini names start with a letter or _")
    if params is None and family == "gemini":
        return out  # Gemini's way of saying "no parameters"
    if not isinstance(params, dict) or params.get("type") != "object":
        out.append(f"{name}: parameters must be an object schema")
        return out
    if family in ("gemini", "ollama") and params.get("required") == []:
        out.append(f"{name}: empty required list")
    if family == "gemini" and not params.get("properties"):
        out.append(f"{name}: Gemini wants no parameters at all rather than an object without properties")
    _walk(family, params, name, out, top=True)
    return out


def _walk(family: str, s: dict, at: str, out: list[str], top: bool = False) -> None:
    t = s.get("type")
    if family == "gemini" and t == "object" and not s.get("properties") and not top:
        out.append(f"{at}: object without properties (Gemini: 'should be non-empty for OBJECT type')")
    if family == "gemini" and t is None and "anyOf" not in s:
        out.append(f"{at}: no type (Gemini needs one)")
    if isinstance(t, list) and family in ("gemini", "ollama"):
        out.append(f"{at}: list-valued type {t}")
    if t == "array" and not isinstance(s.get("items"), dict) and family != "llamacpp":
        out.append(f"{at}: array without items")
    if "enum" in s and not s["enum"]:
        out.append(f"{at}: empty enum")
    if family == "gemini":
        if "enum" in s and (t != "string" or not all(isinstance(v, str) for v in s["enum"])):
            out.append(f"{at}: enum of {t} values (Gemini takes enums of strings only)")
        if "format" in s and s["format"] not in _GEMINI_FORMATS.get(t, ()):
            out.append(f"{at}: format {s['format']!r} on a {t} (Gemini refuses it)")
        out += [f"{at}: keyword {k!r} outside Gemini's subset" for k in s if k not in _GEMINI_KEYS]
    if family == "ollama":
        out += [f"{at}: keyword {k!r} Ollama drops" for k in s if k not in _OLLAMA_KEYS]
    if family == "cerebras":
        out += [f"{at}: keyword {k!r} Cerebras refuses" for k in s if k in _CEREBRAS_DROP]
    if family == "llamacpp":
        out += [f"{at}: keyword {k!r} llama.cpp grammars cannot express" for k in s if k in _LLAMACPP_DROP]
        if "pattern" in s:  # "Pattern must start with '^' and end with '$'", and escapes such as \S: a 400
            out.append(f"{at}: pattern (llama.cpp refuses unanchored ones and escapes its grammar lacks)")
        if not top and not _SHAPE_KEYS & set(s):
            out.append(f"{at}: schema without a type (llama.cpp reads it as an object, not any value)")
    for key, sub in (s.get("properties") or {}).items():
        if isinstance(sub, dict):
            _walk(family, sub, f"{at}.{key}", out)
    if isinstance(s.get("items"), dict):
        _walk(family, s["items"], f"{at}[]", out)
    for i, alt in enumerate(s.get("anyOf") or ()):
        if isinstance(alt, dict):
            _walk(family, alt, f"{at}|{i}", out)


# ---- the translation -----------------------------------------------------------------------------------

def translate(family: str, tools: list[dict] | None) -> list[dict] | None:
    """The tools as `family` accepts them. Never changes the caller's objects. A catalog's tool list
    (rounds/toolset.py OfferedTools) keeps its translations: the same offer is translated once per family."""
    if not tools:
        return tools
    kept = getattr(tools, "translated", None)
    if kept is None:
        return _translate(family, tools)
    out = kept.get(family)
    if out is None:
        out = kept[family] = _translate(family, tools)
    return out


def _translate(family: str, tools: list[dict]) -> list[dict]:
    out = []
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict):
            out.append(t)
            continue
        params = fn.get("parameters")
        params = _schema(family, params) if isinstance(params, dict) else {"type": "object", "properties": {}}
        params.setdefault("type", "object")
        if params.get("type") == "object":
            params.setdefault("properties", {})
        if family == "gemini" and not params.get("properties"):  # "can be left unset" for no parameters
            out.append({**t, "function": {k: v for k, v in fn.items() if k != "parameters"}})
            continue
        out.append({**t, "function": {**fn, "parameters": params}})
    return out


def restore_args(family: str, tools: list[dict] | None, name: str, args: dict | None) -> dict | None:
    """A call's arguments as the original schema means them: for Gemini, a free-form object (one without
    properties, which Gemini cannot declare) was offered as JSON text; decode it back."""
    if family != "gemini" or not isinstance(args, dict):
        return args
    fn = next((t["function"] for t in tools or () if isinstance(t, dict)
               and isinstance(t.get("function"), dict) and t["function"].get("name") == name), None)
    params = fn.get("parameters") if fn else None
    return _restore(params, args) if isinstance(params, dict) else args


def _restore(s: dict, value):
    if _free_object(s) and isinstance(value, str):
        try:
            decoded = fastjson.loads(value)
        except ValueError:
            return value  # left as it came: the device's check says what is wrong
        return decoded if isinstance(decoded, dict) else value
    if isinstance(value, dict) and isinstance(s.get("properties"), dict):
        return {k: _restore(s["properties"][k], v) if isinstance(s["properties"].get(k), dict) else v
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(s.get("items"), dict):
        return [_restore(s["items"], v) for v in value]
    return value


def _free_object(s: dict) -> bool:
    return s.get("type") == "object" and not s.get("properties")


def _schema(family: str, s: dict, top: bool = True) -> dict:
    s = dict(s)
    note = []
    if family in ("gemini", "ollama") and "const" in s and "enum" not in s:
        s["enum"] = [s.pop("const")]  # neither reads `const` (dropped silently); a one-value enum says the same
    if family == "gemini" and _free_object(s) and not top:
        # Gemini cannot declare an object of any shape: it goes as JSON text, decoded back (restore_args)
        s = {"type": "string", "description": "; ".join(filter(None, [s.get("description"), "a JSON object"]))}
    elif family == "gemini" and "type" not in s and "anyOf" not in s and not top:
        s["type"] = _values_type(s.get("enum"))  # Gemini needs a type: an enum's, else any value's, which is text
    if family == "llamacpp" and not top and not _SHAPE_KEYS & set(s):
        s["type"] = list(_ANY_TYPE)
    if s.get("type") == "array" and not isinstance(s.get("items"), dict) and family != "llamacpp":
        s["items"] = {}  # OpenAI: "array schema missing items"; an empty schema means "anything"
    if "enum" in s and not s["enum"]:
        del s["enum"]  # nobody can fill an empty enum; providers reject it (the device still checks)
    if "required" in s and not s["required"]:
        del s["required"]  # bytes, and Gemini/Ollama reject or mis-read an empty list
    if family in ("gemini", "ollama"):
        types = s.pop("type") if isinstance(s.get("type"), list) else None
        alts = s.pop("anyOf", None) if family == "ollama" or _simple_alts(s.get("anyOf")) else None
        kinds = types or [a.get("type") for a in alts or () if isinstance(a, dict)]
        if kinds:  # a union of simple types: Gemini's and Ollama's readers take one type string
            nullable = "null" in kinds
            kinds = [k for k in kinds if k != "null"]
            s["type"] = kinds[0] if len(kinds) == 1 else "string"
            if len(kinds) > 1:
                note.append(" or ".join(_TYPE_WORDS.get(k, str(k)) for k in kinds))
            if nullable and family == "gemini":
                s["nullable"] = True
    if family == "gemini" and "enum" in s and (s.get("type") != "string" or
                                               not all(isinstance(v, str) for v in s["enum"])):
        values = s.pop("enum")  # Gemini's enum is a list of strings, on strings only
        if s.get("type") in ("integer", "number") and all(type(v) in (int, float) for v in values):
            s["minimum"], s["maximum"] = min(values), max(values)
        note.append("one of " + ", ".join(v if isinstance(v, str) else json.dumps(v) for v in values))
    if family == "gemini" and "format" in s and s["format"] not in _GEMINI_FORMATS.get(s.get("type"), ()):
        note.append(_BOUND_WORDS["format"] % s.pop("format"))
    if family == "ollama":  # its tool struct keeps none of them
        note += [words % s[k] for k, words in _BOUND_WORDS.items() if k in s]
    if family == "cerebras":
        note += [_BOUND_WORDS[k] % s.pop(k) for k in _CEREBRAS_DROP if k in s]
    keep = _GEMINI_KEYS if family == "gemini" else _OLLAMA_KEYS if family == "ollama" else None
    if keep is not None:
        s = {k: v for k, v in s.items() if k in keep}
    elif family == "llamacpp":
        if "pattern" in s:
            note.append(_BOUND_WORDS["pattern"] % s["pattern"])
        s = {k: v for k, v in s.items() if k not in _LLAMACPP_DROP and k != "pattern"}
    if note:
        s["description"] = "; ".join([s["description"], *note] if s.get("description") else note)
    if isinstance(s.get("properties"), dict):
        s["properties"] = {k: _schema(family, v, False) if isinstance(v, dict) else v
                           for k, v in s["properties"].items()}
    if isinstance(s.get("items"), dict):
        s["items"] = _schema(family, s["items"], False)
    if isinstance(s.get("anyOf"), list):
        s["anyOf"] = [_schema(family, a, False) if isinstance(a, dict) else a for a in s["anyOf"]]
    return s


def _values_type(values) -> str:
    """The JSON type of all of `values` (an enum's), else "string": text is what every value can be written as."""
    kinds = {_JSON_TYPES.get(type(v)) for v in values or ()}
    if kinds == {"integer", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 and None not in kinds else "string"


def _simple_alts(alts) -> bool:
    return isinstance(alts, list) and bool(alts) and all(
        isinstance(a, dict) and set(a) == {"type"} and isinstance(a["type"], str) for a in alts)
