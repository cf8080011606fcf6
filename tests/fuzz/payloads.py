"""Hostile MQTT payloads for fuzzing: random bytes, truncated and deeply nested JSON, huge
strings, wrong types, odd unicode, and near-valid protocol messages with one field wrong.
Deterministic for a seed, so a failure can be replayed."""
import json
import random

VALID = {
    "ask": {"v": 1, "id": "a1", "text": "turn on the porch light"},
    "cmd": {"v": 1, "id": "c1", "tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}},
    "llm/res": {"v": 1, "id": "a1", "round": 0, "seq": 0, "calls": [{"cid": "x", "tool": "gpio_read",
                                                                       "args": {"pin": "door"}}], "done": True},
    "llm/req": {"v": 1, "id": "r1", "round": 0, "msgs": [{"r": "user", "t": "hi"}], "class": "interactive",
                "budget_ms": 5000, "hash": "00000000"},
}
ODD_VALUES = [None, True, False, 0, -1, 2**63, -2**63, 1e308, -0.0, "", "x" * 5000, "\u0000", "\ud7ff\ue000",
              "😀" * 50, "\u202e", [], {}, [[[]]], {"a": {"b": {}}}, "$ref", "%s%n", "../../etc/passwd"]


def _deep(rng):
    depth = rng.choice([10, 100, 1000, 2000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return (opener * depth + "1" + closer * depth).encode()


def _mutate(rng, base):
    msg = json.loads(json.dumps(base))
    key = rng.choice(list(msg) + ["extra"])
    action = rng.random()
    if action < 0.4:
        msg[key] = rng.choice(ODD_VALUES)
    elif action < 0.6:
        msg.pop(key, None)
    elif action < 0.8 and isinstance(msg.get("args"), dict):
        msg["args"][rng.choice(["pin", "value", "zz"])] = rng.choice(ODD_VALUES)
    elif isinstance(msg.get("calls"), list):
        msg["calls"] = [rng.choice(ODD_VALUES) for _ in range(rng.randint(0, 6))]
    else:
        msg[key] = rng.choice(ODD_VALUES)
    return json.dumps(msg).encode()


def generate(topic_kind, count, seed=1):
    """`count` payloads aimed at a topic kind ('ask', 'cmd', 'llm/res', 'llm/req', or anything else)."""
    rng = random.Random(f"{seed}:{topic_kind}")
    base = VALID.get(topic_kind, VALID["ask"])
    text = json.dumps(base).encode()
    for _ in range(count):
        r = rng.random()
        if r < 0.15:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        elif r < 0.3:
            yield text[:rng.randint(0, len(text) - 1)]
        elif r < 0.4:
            yield _deep(rng)
        elif r < 0.45:
            yield b'{"v":1,"id":"big","text":"' + b"A" * rng.choice([4000, 4100, 20000]) + b'"}'
        elif r < 0.55:
            yield json.dumps(rng.choice(ODD_VALUES)).encode()
        elif r < 0.6:
            yield "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(40)).encode("utf-8", "surrogatepass")
        else:
            yield _mutate(rng, base)
