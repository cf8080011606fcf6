"""JSON on the bridge's per-message path (device requests, the tier's stream, llm/res): orjson where it is
installed, the standard library otherwise, with the standard library's results either way.

orjson parses and writes the compact UTF-8 that json.dumps(separators=(",", ":"), ensure_ascii=False) writes,
several times faster. Whatever orjson refuses (NaN in a document, non-string keys, non-UTF-8 input, nesting
deeper than 1024) goes to the json module, and so does a document with 19 digits in a row (orjson reads an
integer beyond 64 bits as a float, json exactly): values, accepted inputs and error messages stay those of json.
One difference remains, outside what JSON can carry anyway: a float NaN or infinity is written as null (json
writes the invalid token NaN).
"""
from __future__ import annotations

import json
import re

try:
    import orjson
except ImportError:  # an optional speed-up: everything works without it
    orjson = None

ENGINE = f"orjson {orjson.__version__}" if orjson else "json"


def _std_dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


_LONG_NUMBER = re.compile(rb"[0-9]{19}"), re.compile(r"[0-9]{19}")  # may not fit 64 bits (bytes, str)

if orjson is not None:
    def loads(data: bytes | str):
        """json.loads(data)."""
        if _LONG_NUMBER[isinstance(data, str)].search(data):
            return json.loads(data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # json's own verdict: its values (NaN, big ints) or its error message
            return json.loads(data)

    def dumps(obj) -> bytes:
        """Compact UTF-8 JSON, as json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()."""
        try:
            return orjson.dumps(obj)
        except TypeError:  # orjson.JSONEncodeError: a type or value only json writes
            return _std_dumps(obj)
else:
    loads = json.loads
    dumps = _std_dumps
