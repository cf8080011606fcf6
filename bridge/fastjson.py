"""JSON on the bridge's per-message path (device requests, the tier's stream, llm/res): orjson where it is
installed, the standard library otherwise, with the standard library's results either way.

orjson parses and writes the compact UTF-8 that json.dumps(separators=(",", ":"), ensure_ascii=False) writes,
several times faster. Whatever orjson refuses (NaN in a document, non-string keys, non-UTF-8 input, nesting
deeper than 1024) goes to the json module, and so does a document with 19 digits in a row (orjson reads an
integer beyond 64 bits as a float, json exactly): values, accepted inputs and error messages stay those of json.
Two differences remain. A float NaN or infinity is written as null (json writes the invalid token NaN), outside
what JSON can carry anyway. And a document nested deeper than json's recursion allows (about 1,000 levels: "[[[[..."
from a device, a broker or a model caught in a loop) is a ValueError here, as any other document json cannot read,
not the RecursionError json raises, which callers that catch ValueError would let through.
"""
from __future__ import annotations

import json
import math
import re

try:
    import orjson
except ImportError:  # an optional speed-up: everything works without it
    orjson = None

ENGINE = f"orjson {orjson.__version__}" if orjson else "json"


def _std_dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# 19 digits in a row may not fit 64 bits. Found by mapping every ASCII digit to "0" and looking for 19 of them:
# two passes in C, ~8x cheaper than the regex [0-9]{19} on a tier's stream chunk (it ran on every message).
# UTF-8 encodes no other character with the bytes of ASCII digits, so a str is checked as its UTF-8 bytes.
_DIGITS_TO_0 = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19


def _long_number(data: bytes | str) -> bool:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, memoryview):
        data = data.tobytes()
    return _LONG_NUMBER in data.translate(_DIGITS_TO_0)


def _read(data: bytes | str, **hooks):
    """orjson where it reads the document as json would, else json (with `hooks`): its values (NaN, big ints),
    or its verdict in its words; ValueError for any document it cannot read."""
    if orjson is not None and not _long_number(data):
        try:
            return orjson.loads(data)  # it refuses NaN, Infinity and 1e400 itself: json's hooks decide those
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(data, **hooks)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range for a number")
    return value


# MicroPython's json reads "\ud83c\udf31", the escapes json.dumps writes for an emoji by default (ensure_ascii), as
# two lone surrogates, and writes each back as 3 bytes (CESU-8), which is not UTF-8. A device passes them on in what
# it publishes: an ask's text, a fact it remembered. json reads those bytes (surrogatepass), but the text cannot be
# written as UTF-8 again, so no tier could be sent the request. Read here as the characters they are: a pair as its
# character, a lone one as U+FFFD.
_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def _utf8(data):
    if isinstance(data, (bytes, bytearray)) and b"\xed" in data and _SURROGATE.search(data):
        try:
            text = bytes(data).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return data  # not UTF-8 in other ways too: json says so
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()
    return data


def loads(data: bytes | str):
    """json.loads(data); ValueError for any document it cannot read. Surrogates a device wrote as bytes (above) are
    read as the characters they stand for."""
    return _read(_utf8(data))


def loads_strict(data: bytes | str):
    """loads, refusing what Python's json reads but JSON has not: NaN, Infinity, and numbers that overflow a
    double (1e400 reads as infinity). The bridge would pass them on as null (orjson) or as the invalid token
    NaN (json), so a device or a caller gets a value nobody sent, or a message it cannot parse. For what a
    model or an HTTP caller sends; ValueError says what is wrong."""
    return _read(data, parse_constant=_no_constant, parse_float=_finite)


if orjson is not None:
    def dumps(obj) -> bytes:
        """Compact UTF-8 JSON, as json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()."""
        try:
            return orjson.dumps(obj)
        except TypeError:  # orjson.JSONEncodeError: a type or value only json writes
            return _std_dumps(obj)
else:
    dumps = _std_dumps
