"""Check a model's tool call against the device manifest before it is forwarded: tool name, required
arguments, JSON types, enums and numeric bounds (the JSON Schema subset manifests use). Errors are phrased
for the model, which gets them back as a tool result and can correct the call.
"""
from __future__ import annotations

_TYPES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
          "array": "a list", "object": "an object", "null": "null"}
MAX_DEPTH = 8  # nested objects checked this deep; manifests are flat, this only bounds odd schemas


def check_call(tools: dict[str, dict], name: str, args, parse_error: str | None = None) -> str | None:
    """None if the call is valid, else an "Error: ..." line. tools: tool name -> manifest tool entry."""
    if name not in tools:
        return f"Error: unknown tool {name!r}; tools: {', '.join(sorted(tools)) or 'none'}"
    if parse_error or not isinstance(args, dict):
        return f"Error: {name}: {parse_error or 'arguments must be a JSON object'}"
    problem = _check(args, tools[name].get("params") or {}, "", 0)
    return f"Error: {name}: {problem}" if problem else None


def _check(value, schema: dict, path: str, depth: int) -> str | None:
    # Runs on every call a model makes: the message parts are built only for a call that fails.
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    want = schema.get("type")
    kinds = want if isinstance(want, list) else (want,) if isinstance(want, str) else ()
    if kinds and not any(_is(value, k) for k in kinds):
        return f"{_where(path)} must be {' or '.join(_TYPES.get(k, k) for k in kinds)}, got {_show(value)}"
    enum = schema.get("enum")
    if isinstance(enum, list) and not any(_same(value, e) for e in enum):
        return f"{_where(path)} must be one of {', '.join(_show(e) for e in enum)}, got {_show(value)}"
    if _is(value, "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if isinstance(lo, (int, float)) and value < lo or isinstance(hi, (int, float)) and value > hi:
            return (f"{_where(path)} must be between {lo if lo is not None else '-inf'} and "
                    f"{hi if hi is not None else 'inf'}")
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, dict):
            props = {}
        for req in schema.get("required") or ():
            if req not in value:
                kind = (props.get(req) or {}).get("type")
                hint = f" ({_TYPES.get(kind, kind)})" if isinstance(kind, str) else ""
                return f"'{_join(path, req)}' required{hint}"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                unknown = ", ".join(repr(_join(path, k)) for k in extra)
                return f"unknown argument(s) {unknown}; allowed: {', '.join(props)}"
        for key, sub in props.items():
            if key in value:
                problem = _check(value[key], sub, _join(path, key), depth + 1)
                if problem:
                    return problem
    return None


def _where(path: str) -> str:
    return f"'{path}'" if path else "arguments"


_PY_TYPES = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}


def _is(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)  # 1.0 too: the device refuses it as well
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    py_type = _PY_TYPES.get(kind)
    return py_type is None or isinstance(value, py_type)


def _same(a, b) -> bool:
    # JSON has no bool/int distinction problem, Python does: true must not match 1
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 40 else text[:37] + "..."
