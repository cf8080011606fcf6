"""A device's llm/req, for any input: valid conversations translate to OpenAI messages that say the
same thing; anything else is refused with ValueError / Failure / a read() problem, never another
exception (an uncaught one would leave the device waiting for an answer that never comes)."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.reasons import Failure, Reason
from bridge.rounds import request as rq
from bridge.rounds.translate import to_openai_messages

PROPS = settings(max_examples=200, deadline=None)

json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
word = st.text(min_size=1, max_size=12)


@st.composite
def conversations(draw):
    """Valid compact msgs: user / asst (maybe with calls) / tool results answering earlier calls."""
    msgs, calls_made = [{"r": "user", "t": draw(st.text(max_size=40))}], []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["user", "asst", "tool"] if calls_made else ["user", "asst"]))
        if kind == "user":
            msgs.append({"r": "user", "t": draw(st.text(max_size=40))})
        elif kind == "asst":
            m = {"r": "asst"}
            if draw(st.booleans()):
                m["t"] = draw(st.text(max_size=40))
            calls = [{"cid": draw(word), "tool": draw(word),
                      **({"args": draw(st.dictionaries(st.text(max_size=8), json_value, max_size=3))}
                         if draw(st.booleans()) else {})} for _ in range(draw(st.integers(0, 3)))]
            if calls or draw(st.booleans()):
                m["calls"] = calls
            calls_made += [c["cid"] for c in calls]
            msgs.append(m)
        else:
            msgs.append({"r": "tool", "cid": draw(st.sampled_from(calls_made)), "t": draw(st.text(max_size=40))})
    return msgs


def back_to_compact(out):
    """The test's own inverse of the translation: what the tier was told, in the device's terms."""
    msgs = []
    for m in out:
        if m["role"] == "user":
            msgs.append({"r": "user", "t": m["content"]})
        elif m["role"] == "tool":
            msgs.append({"r": "tool", "cid": m["tool_call_id"], "t": m["content"]})
        else:
            calls = [{"cid": c["id"], "tool": c["function"]["name"], "args": json.loads(c["function"]["arguments"])}
                     for c in m.get("tool_calls", [])]
            msgs.append({"r": "asst", "t": m["content"] or "", "calls": calls})
    return msgs


def normalised(msgs):
    out = []
    for m in msgs:
        if m["r"] == "asst":
            m = {"r": "asst", "t": m.get("t", ""),
                 "calls": [{**c, "args": c.get("args", {})} for c in m.get("calls", [])]}
        out.append(m)
    return out


@PROPS
@given(conversations())
def test_valid_conversations_translate_to_what_they_say(msgs):
    out = to_openai_messages(msgs)
    assert back_to_compact(out) == normalised(msgs)
    for m in out:  # OpenAI's own shape: content null beside tool_calls, arguments a JSON string
        if m.get("tool_calls"):
            assert m["content"] is None or m["content"]
            assert all(isinstance(c["function"]["arguments"], str) for c in m["tool_calls"])


@PROPS
@given(json_value)
def test_any_json_is_translated_or_refused_with_a_value_error(msgs):
    try:
        out = to_openai_messages(msgs)
    except ValueError as e:
        assert str(e)
    else:
        assert isinstance(out, list) and out


@PROPS
@given(conversations(), st.data())
def test_a_broken_field_is_refused_naming_where(msgs, data):
    i = data.draw(st.integers(0, len(msgs) - 1))
    m = msgs[i]
    key = data.draw(st.sampled_from(sorted(m)))
    bad = data.draw(json_value.filter(lambda v: not isinstance(v, (str, list, dict))))
    msgs[i] = {**m, key: bad}
    try:
        to_openai_messages(msgs)
    except ValueError as e:
        assert f"msgs[{i}]" in str(e) or (key == "cid" and "result for call" in str(e)), str(e)
    else:
        raise AssertionError(f"msgs[{i}].{key} = {bad!r} was accepted")


# ---- read() and check(): the whole request --------------------------------------------------------------------
def classify(payload):
    """read then check, as the bridge's handler does: (problem or None, LlmRequest or None)."""
    req, req_id, round_, problem = rq.read(payload)
    assert problem is None or isinstance(problem, str) and problem
    assert req_id is None or isinstance(req_id, str)
    if problem:
        assert req is None
        return problem, None
    assert isinstance(req, dict) and req_id == req["id"]
    try:
        return None, rq.check(req, round_)
    except Failure as e:
        assert str(e) and e.reason is Reason.BAD_REQUEST
        return str(e), None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_give_a_problem_never_an_exception(payload):
    problem, _ = classify(payload)
    assert problem


request_fields = st.fixed_dictionaries({}, optional={
    "v": st.sampled_from([1, 2, "1", None]), "id": st.text(max_size=45) | json_scalar,
    "round": st.integers(-3, 10**7) | json_scalar, "class": st.sampled_from(["interactive", "scheduled", "private",
                                                                            "vip"]) | json_scalar,
    "budget_ms": st.integers(-5, 10**6) | json_scalar, "hash": st.text(max_size=8) | json_scalar,
    "msgs": conversations() | json_value, "facts": st.lists(st.text(max_size=300), max_size=8) | json_value})


@settings(max_examples=400, deadline=None)
@given(request_fields)
def test_near_valid_requests_are_checked_never_crash(fields):
    classify(json.dumps(fields).encode())


@PROPS
@given(conversations(), st.text(min_size=1, max_size=40), st.integers(0, 99), st.sampled_from(rq.REQUEST_CLASSES),
       st.one_of(st.none(), st.integers(1, 10**6)))
def test_valid_requests_pass_with_their_messages(msgs, req_id, round_, req_class, budget):
    body = {"v": 1, "id": req_id, "round": round_, "class": req_class, "msgs": msgs}
    if budget is not None:
        body["budget_ms"] = budget
    problem, req = classify(json.dumps(body).encode())
    assert problem is None
    assert req.req_class == req_class and req.messages == to_openai_messages(msgs)
    assert req.budget_ms == (budget or rq.DEFAULT_BUDGET_MS)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_and_huge_requests_are_refused_with_a_reason(depth, opener):
    problem, _ = classify(opener * depth)
    assert problem
