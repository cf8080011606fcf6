"""The bridge's JSON codec reads what json reads, with json's values: integers beyond 64 bits stay exact."""
import json

import pytest

from bridge import fastjson

BIG = 123456789012345678901234567890


@pytest.mark.parametrize("doc", [
    f'{{"n":{BIG}}}', f'[-{BIG}]', '{"n":18446744073709551616}', '{"n":-9223372036854775809}',
    '{"t":"1234567890123456789 is text","n":1.5}', '{"id":"chatcmpl-1","created":1733361234,"x":[1,2]}',
    '{"s":"caf\u00e9 \u00bd","n":12345678901234567}', '{"n":NaN}',
])
def test_values_are_those_of_json(doc):
    for data in (doc, doc.encode(), bytearray(doc.encode())):
        got, want = fastjson.loads(data), json.loads(doc)
        assert repr(got) == repr(want)


def test_integer_beyond_64_bits_stays_an_exact_int():
    assert fastjson.loads(f'{{"n":{BIG}}}'.encode())["n"] == BIG


@pytest.mark.parametrize("bad", ['{"n":', '{"a":1}x', b'\xff{}'])
def test_errors_are_json_errors(bad):
    with pytest.raises(ValueError):
        fastjson.loads(bad)


@pytest.mark.parametrize("deep", ["[" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_a_document_nested_too_deeply_is_a_value_error_like_any_unreadable_one(deep):
    """json raises RecursionError here, which every `except ValueError` around a network read let through."""
    for data in (deep, deep.encode()):
        with pytest.raises(ValueError, match="nested too deeply"):
            fastjson.loads(data)


@pytest.mark.parametrize("doc, why", [('{"n":NaN}', "NaN is not a JSON value"), ("[Infinity]", "Infinity is not"),
                                      ('{"n":-Infinity}', "-Infinity is not"), ('{"n":1e400}', "1e400 is out of range"),
                                      ("[-1e400]", "-1e400 is out of range")])
def test_strict_refuses_what_json_reads_but_json_has_not(doc, why):
    for data in (doc, doc.encode()):
        with pytest.raises(ValueError, match=why):
            fastjson.loads_strict(data)


def test_strict_reads_everything_else_as_loads_does():
    doc = f'{{"n":{BIG},"f":1.5e300,"s":"caf\u00e9","l":[true,null,-0.0]}}'
    assert repr(fastjson.loads_strict(doc)) == repr(fastjson.loads(doc)) == repr(json.loads(doc))


def test_surrogates_a_device_wrote_as_bytes_read_as_their_characters():
    """MicroPython's json writes the escapes of an emoji it read ("\\ud83c\\udf31") as two 3-byte surrogates: read
    back as the emoji, so the text can be sent on. A lone one is U+FFFD; real UTF-8 (Hangul starts with \\xed too)
    is kept."""
    cesu = '"\ud83c\udf31 basil"'.encode("utf-8", "surrogatepass")
    assert fastjson.loads(b'{"t":' + cesu + b"}") == {"t": "\U0001F331 basil"}
    assert fastjson.loads(b'["' + "\ud800".encode("utf-8", "surrogatepass") + b'x"]') == ["\ufffdx"]
    assert fastjson.loads('["\ud55c\uae00 \U0001F600"]'.encode()) == ["\ud55c\uae00 \U0001F600"]
    fastjson.dumps(fastjson.loads(cesu))  # writable again
    with pytest.raises(ValueError):
        fastjson.loads(cesu + b"\xff")
