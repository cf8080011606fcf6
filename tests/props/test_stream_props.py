"""The provider stream codecs, for any input: an SSE stream cut into network chunks anywhere
decodes to the same events, and tool calls fragmented anyhow assemble to the same calls."""
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.providers.base import SSEDecoder
from bridge.providers.openai_compat import ToolCallAssembler

PROPS = settings(max_examples=200, deadline=None)

line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)
# one event: its data lines plus fields and comments the decoder must ignore
event = st.tuples(st.lists(line_text, min_size=1, max_size=4),
                  st.lists(st.sampled_from([": keep-alive", "event: message", "id: 7", "retry: 100", ":"]),
                           max_size=2))


def encode(events, newline):
    out = []
    for data, extra in events:
        out += extra + ["data: " + d for d in data] + [""]
    return (newline.join(out) + newline).encode()


def chunks(blob, cuts):
    edges = sorted({0, len(blob), *[c % (len(blob) + 1) for c in cuts]})
    return [blob[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def decode(pieces):
    d, out = SSEDecoder(), []
    for p in pieces:
        out += d.feed(p)
    return out + d.flush()


@PROPS
@given(st.lists(event, max_size=6), st.sampled_from(["\n", "\r\n"]), st.lists(st.integers(0, 10_000), max_size=12))
def test_sse_events_survive_any_chunking(events, newline, cuts):
    blob = encode(events, newline)
    assert decode(chunks(blob, cuts)) == ["\n".join(data) for data, _ in events]


@PROPS
@given(st.lists(event, min_size=1, max_size=4), st.lists(st.integers(0, 10_000), max_size=8))
def test_a_stream_missing_its_last_blank_line_still_ends_with_its_last_event(events, cuts):
    blob = encode(events, "\n")[:-1]  # servers that close right after the final data line
    assert decode(chunks(blob, cuts)) == ["\n".join(data) for data, _ in events]


@PROPS
@given(st.binary(max_size=400), st.lists(st.integers(0, 1000), max_size=8))
def test_arbitrary_bytes_decode_to_strings_the_same_however_cut(blob, cuts):
    whole = decode([blob])
    assert all(isinstance(e, str) for e in whole)
    assert decode(chunks(blob, cuts)) == whole


# ---- tool calls -------------------------------------------------------------------------------------------------
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=15)
tool_name = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
a_call = st.tuples(tool_name, st.dictionaries(st.text(max_size=8), json_value, max_size=5))


def fragments(calls, ids, ollama, cuts, repeat_name):
    """OpenAI tool_call deltas: per call, a head (index, id, name) then argument pieces."""
    frags = []
    for i, ((name, args), cid) in enumerate(zip(calls, ids, strict=False)):
        raw = json.dumps(args)
        edges = sorted({0, len(raw), *[c % (len(raw) + 1) for c in cuts[i % len(cuts)]]}) if cuts else [0, len(raw)]
        pieces = [raw[a:b] for a, b in zip(edges, edges[1:], strict=False)] or [""]
        index = 0 if ollama else i
        for j, piece in enumerate(pieces):
            frag = {"index": index, "function": {"arguments": piece}}
            if j == 0:
                frag["type"] = "function"
                frag["function"]["name"] = name
                if cid is not None:
                    frag["id"] = cid
            elif repeat_name:  # some servers repeat the full name on every fragment
                frag["function"]["name"] = name
            frags.append(frag)
    return frags


@PROPS
@given(st.lists(a_call, min_size=1, max_size=5), st.booleans(), st.booleans(), st.booleans(),
       st.lists(st.lists(st.integers(0, 500), max_size=6), max_size=5), st.integers(1, 4), st.data())
def test_tool_calls_assemble_the_same_however_fragmented(calls, ollama, with_ids, repeat_name, cuts, per_delta,
                                                         data):
    ids = [f"call_{i}_x" for i in range(len(calls))] if with_ids or ollama else [None] * len(calls)
    frags = fragments(calls, ids, ollama, cuts, repeat_name)
    asm, got, i = ToolCallAssembler(), [], 0
    while i < len(frags):  # a delta carries one or more fragments
        n = data.draw(st.integers(1, per_delta))
        got += asm.feed(frags[i:i + n])
        i += n
    got += asm.finish()
    assert [(c.name, c.args, c.error) for c in got] == [(n, a, None) for n, a in calls]
    assert [c.cid for c in got] == [cid or f"call_{i}" for i, cid in enumerate(ids)]
    assert [json.loads(c.raw_args) for c in got] == [a for _, a in calls]


@PROPS
@given(st.lists(json_value, max_size=6))
@example([{"index": 0, "id": 1}])  # a number for an id once named the call 1, not a string
def test_any_delta_content_gives_calls_or_nothing_never_an_exception(deltas):
    asm = ToolCallAssembler()
    out = []
    for d in deltas:
        out += asm.feed(d if isinstance(d, list) else [d])
    out += asm.finish()
    for c in out:
        assert isinstance(c.cid, str) and c.cid
        assert isinstance(c.args, dict) or c.error  # unusable arguments are said, not guessed
        assert c.name or c.error
