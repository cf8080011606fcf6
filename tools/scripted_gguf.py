"""A tiny GGUF model whose answers are scripted, for running the real llama-server in checks.

llama-server is the local tier most wisp users run, and our stand-in tier cannot tell what it really
does with the bridge's requests: its chat template, its JSON-schema-to-grammar conversion of every tool
(which refuses some schemas outright), its tool-call parser and the bytes it streams. Those need the
real server with a model, and no model can be downloaded here; so this writes one (~2 MB).

The model is a one-layer llama whose weights are set by hand, not trained:
- each token's embedding is a one-hot vector, so the output layer reads the last token alone: a bigram
  table. Its ranking is fixed (the end of turn first, then `"`, `}`, ...), so where llama-server's
  grammar constrains the output (a tool call's JSON), the model takes the highest-ranked token the
  grammar allows: the shortest strings, `gpio_write` before the other tools, `porch_light` before the
  other pins, 1 before 0. After the newline that opens its turn it writes `<tool_call>` instead, and
  after that tag a newline: the word llama-server's lazy grammar waits for is the tag with its newline.
- attention is uniform (zero queries and keys) and its values carry one flag: "a tool result is in
  the context" (the `</tool_response>` token). The flag lifts the end of turn above all else, so once
  the tool has run the model ends its turn with no text: what small local models often do.

The chat template is ChatML with Hermes-style tool calls (`<tool_call>` JSON `</tool_call>`), the
format of the Qwen 2.5 family and most local tool-calling models; llama-server reads it from the file.

    python -m tools.scripted_gguf /tmp/scripted.gguf
"""
import struct
import sys
from array import array
from pathlib import Path

SPECIALS = [  # (text, GGUF token type): 3 control (never shown), 4 user-defined (shown as text)
    ("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3),
    ("<tool_call>", 4), ("</tool_call>", 4), ("<tool_response>", 4), ("</tool_response>", 4),
]
EMBED = 288            # >= the vocabulary plus the flag dimension (one-hot embeddings), a multiple of 32
HEADS = 4
FLAG = EMBED - 1       # the residual dimension that carries "a tool result is in the context"
CONTEXT = 32768        # the prompt is one token per byte (no merges): the tool list alone is ~6,000
STEP = 20.0            # logit gap between ranks: at temperature 1 the next rank has odds e^-20
TEMPLATE = (  # newlines after a tag are written as {{ NL }}: Jinja's trim_blocks drops a literal one
    "{% set NL = '\n' %}"
    "{% set sys = messages[0].content if messages and messages[0].role == 'system' else "
    "'You are a helpful assistant.' %}"
    "<|im_start|>system{{ NL }}{{ sys }}"
    "{% if tools %}{{ NL }}{{ NL }}# Tools{{ NL }}{{ NL }}You may call functions. Their signatures are within "
    "<tools></tools>:{{ NL }}<tools>"
    "{% for tool in tools %}{{ NL }}{{ tool | tojson }}{% endfor %}{{ NL }}</tools>{{ NL }}{{ NL }}"
    "Return each call as a JSON object within <tool_call></tool_call> tags:{{ NL }}<tool_call>{{ NL }}"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}{{ NL }}</tool_call>{% endif %}"
    "<|im_end|>{{ NL }}"
    "{% for m in messages %}"
    "{% if m.role == 'system' and loop.first %}"
    "{% elif m.role == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ NL }}<tool_response>{{ NL }}{{ m.content }}{{ NL }}</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>{{ NL }}{% endif %}"
    "{% elif m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant"
    "{% if m.content %}{{ NL }}{{ m.content }}{% endif %}"
    "{% for call in m.tool_calls %}{% set f = call.function if call.function is defined else call %}"
    "{{ NL }}<tool_call>{{ NL }}{\"name\": \"{{ f.name }}\", \"arguments\": {{ f.arguments | tojson }}}"
    "{{ NL }}</tool_call>"
    "{% endfor %}<|im_end|>{{ NL }}"
    "{% else %}<|im_start|>{{ m.role }}{{ NL }}{{ m.content }}<|im_end|>{{ NL }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ NL }}{% endif %}"
)


def byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet: byte b as one printable character (bytes that are not get 256+)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra, out = 0, []
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def vocabulary() -> tuple[list[str], list[int], dict[str, int]]:
    tokens = byte_tokens() + ["ĠĠ"] + [t for t, _ in SPECIALS]  # one merge: llama.cpp's BPE needs a list
    types = [1] * 257 + [k for _, k in SPECIALS]
    ids = {t: i for i, t in enumerate(tokens)}
    return tokens, types, ids


def ranking(ids: dict[str, int]) -> list[float]:
    """Every token's logit when nothing else applies: a strict order, no ties."""
    alphabet = byte_tokens()
    first = ["<|im_end|>", "</tool_call>"] + [alphabet[ord(c)] for c in '"}],1gwp:{']
    order = first + [t for t in ids if t not in first]
    logits = [0.0] * len(ids)
    for rank, tok in enumerate(order):
        logits[ids[tok]] = STEP * (len(order) - rank)
    return logits


def weights() -> dict[str, tuple[list[int], array]]:
    tokens, _, ids = vocabulary()
    n = len(tokens)
    assert n < FLAG
    scale = EMBED ** 0.5  # RMSNorm turns a one-hot 1 into sqrt(EMBED)
    zero = lambda rows, cols: array("f", bytes(4 * rows * cols))  # noqa: E731
    ones = array("f", [1.0] * EMBED)
    embed = zero(n, EMBED)
    for i in range(n):
        embed[i * EMBED + i] = 1.0
    base = ranking(ids)
    out = zero(n, EMBED)
    for prev in range(n):
        for nxt in range(n):
            out[nxt * EMBED + prev] = base[nxt] / scale
    newline = ids[byte_tokens()[ord("\n")]]
    top = base[ids["<|im_end|>"]] + STEP
    out[ids["<tool_call>"] * EMBED + newline] = top / scale  # its turn opens with a call...
    out[newline * EMBED + ids["<tool_call>"]] = top / scale  # ...and llama-server's trigger wants its newline
    # the flag is 1/(tokens in context) per tool result: at least 1/CONTEXT, lifting the end of turn by
    # at least 50 ranks over anything the bigram table prefers
    out[ids["<|im_end|>"] * EMBED + FLAG] = 50 * STEP * CONTEXT / scale
    value = zero(EMBED, EMBED)
    value[FLAG * EMBED + ids["</tool_response>"]] = 1.0 / scale  # the flag's value: 1 on that token only
    attn_out = zero(EMBED, EMBED)
    attn_out[FLAG * EMBED + FLAG] = 1.0
    ff = 32
    return {
        "token_embd.weight": ([EMBED, n], embed),
        "output_norm.weight": ([EMBED], ones),
        "output.weight": ([EMBED, n], out),
        "blk.0.attn_norm.weight": ([EMBED], ones),
        "blk.0.attn_q.weight": ([EMBED, EMBED], zero(EMBED, EMBED)),
        "blk.0.attn_k.weight": ([EMBED, EMBED], zero(EMBED, EMBED)),
        "blk.0.attn_v.weight": ([EMBED, EMBED], value),
        "blk.0.attn_output.weight": ([EMBED, EMBED], attn_out),
        "blk.0.ffn_norm.weight": ([EMBED], ones),
        "blk.0.ffn_gate.weight": ([EMBED, ff], zero(ff, EMBED)),
        "blk.0.ffn_up.weight": ([EMBED, ff], zero(ff, EMBED)),
        "blk.0.ffn_down.weight": ([ff, EMBED], zero(EMBED, ff)),
    }


def metadata() -> list[tuple[str, str, object]]:
    tokens, types, ids = vocabulary()
    return [
        ("general.architecture", "str", "llama"),
        ("general.name", "str", "wisp scripted"),
        ("llama.context_length", "u32", CONTEXT),
        ("llama.embedding_length", "u32", EMBED),
        ("llama.block_count", "u32", 1),
        ("llama.feed_forward_length", "u32", 32),
        ("llama.attention.head_count", "u32", HEADS),
        ("llama.attention.head_count_kv", "u32", HEADS),
        ("llama.rope.dimension_count", "u32", EMBED // HEADS),
        ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-6),
        ("tokenizer.ggml.model", "str", "gpt2"),
        ("tokenizer.ggml.pre", "str", "qwen2"),
        ("tokenizer.ggml.tokens", "[str]", tokens),
        ("tokenizer.ggml.token_type", "[i32]", types),
        ("tokenizer.ggml.merges", "[str]", ["Ġ Ġ"]),
        ("tokenizer.ggml.bos_token_id", "u32", ids["<|endoftext|>"]),
        ("tokenizer.ggml.eos_token_id", "u32", ids["<|im_end|>"]),
        ("tokenizer.ggml.padding_token_id", "u32", ids["<|endoftext|>"]),
        ("tokenizer.ggml.add_bos_token", "bool", False),
        ("tokenizer.chat_template", "str", TEMPLATE),
    ]


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


_SCALARS = {"u32": (4, "<I"), "i32": (5, "<i"), "f32": (6, "<f"), "bool": (7, "<?")}


def _value(kind: str, v) -> bytes:
    if kind == "str":
        return struct.pack("<I", 8) + _string(v)
    if kind.startswith("["):
        inner = kind[1:-1]
        code = 8 if inner == "str" else _SCALARS[inner][0]
        body = b"".join(_string(x) if inner == "str" else struct.pack(_SCALARS[inner][1], x) for x in v)
        return struct.pack("<IIQ", 9, code, len(v)) + body
    code, fmt = _SCALARS[kind]
    return struct.pack("<I", code) + struct.pack(fmt, v)


def write(path: Path) -> Path:
    """Writes the model (GGUF v3, f32 tensors) to `path`."""
    align = 32
    tensors = weights()
    kv = metadata()
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    head += b"".join(_string(k) + _value(kind, v) for k, kind, v in kv)
    offset, infos, blobs = 0, b"", []
    for name, (dims, data) in tensors.items():
        infos += _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", 0, offset)  # type 0: f32
        raw = data.tobytes()
        raw += bytes(-len(raw) % align)
        blobs.append(raw)
        offset += len(raw)
    head += infos
    head += bytes(-len(head) % align)
    path = Path(path)
    path.write_bytes(head + b"".join(blobs))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tools.scripted_gguf OUT.gguf")
    print(write(Path(sys.argv[1])))
