"""llama2.c and GGUF exports, each read back independently.

The llama2.c files are parsed by a NumPy reader written here from the documented layout, and a NumPy forward
pass in run.c's conventions (adjacent-pair rotary, eps 1e-5, theta 10000) must reproduce babyllama's logits.
The GGUF files are read with gguf's own GGUFReader. A Python model of run.c's tokenizer (greedy merges by score,
<0xXX> pieces, the space dropped after BOS) checks the tokenizer .bin.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.data.tokenizer import train_tokenizer
from babyllama.model import Llama
from babyllama.modelio import save_model

SHAPE = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=48)


@pytest.fixture(scope="module")
def tokenizer(tinystories):
    text = (tinystories / "train.txt").read_text(encoding="utf-8")[:300_000]
    return train_tokenizer(text.split("\n"), 420, show_progress=False)


def make_model(folder: Path, tokenizer, tie: bool, extra_vocab: int = 0, seed: int = 0) -> tuple[Path, Llama]:
    """A random-weight model (norm weights randomised too, so a swapped norm would show)."""
    torch.manual_seed(seed)
    model = Llama(ModelConfig(**SHAPE, vocab_size=tokenizer.vocab_size + extra_vocab, tie_embeddings=tie)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.08)
    return save_model(model, folder, tokenizer), model


@pytest.fixture(scope="module", params=["tied", "untied"])
def exported(request, tokenizer, tmp_path_factory):
    """A model folder plus its llama2.c (v0 and v2) and GGUF (f32, f16, q8_0) exports."""
    from babyllama.export.gguf import export_gguf
    from babyllama.export.llama2c import export_llama2c

    root = tmp_path_factory.mktemp(request.param)
    tie = request.param == "tied"
    folder, model = make_model(root / "model", tokenizer, tie, extra_vocab=0 if tie else 5)
    out = {"folder": folder, "model": model, "tie": tie}
    out["v0"] = export_llama2c(folder, root / "l2c", version=0, log=lambda _: None)
    out["v2"] = export_llama2c(folder, root / "l2c_q" / "model_q80.bin", version=2, log=lambda _: None)
    for kind in ("f32", "f16", "q8_0"):
        out[kind] = export_gguf(folder, root / f"model-{kind}.gguf", kind)
    return out


# --------------------------------------------------------------------------- an independent llama2.c reader


def read_llama2c(path: Path) -> tuple[dict, dict]:
    """Parse a llama2.c model file (version 0 or 2) into config + float arrays (int8 ones dequantized)."""
    raw = Path(path).read_bytes()
    magic = struct.unpack_from("<I", raw, 0)[0]
    if magic == 0x616B3432:
        version = struct.unpack_from("<i", raw, 4)[0]
        assert version == 2
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", raw, 8)
        shared = raw[36] == 1
        group = struct.unpack_from("<i", raw, 37)[0]
        offset = 256
    else:
        version, group = 0, None
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", raw, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        offset = 28
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, seq_len=seq_len,
               head=dim // heads, shared=shared, version=version, group=group)
    kv = kv_heads * (dim // heads)
    pos = offset

    def floats(*shape):
        nonlocal pos
        count = int(np.prod(shape))
        arr = np.frombuffer(raw, dtype="<f4", count=count, offset=pos).reshape(shape)
        pos += 4 * count
        return arr.astype(np.float64)

    def q80(*shape):
        nonlocal pos
        count = int(np.prod(shape))
        q = np.frombuffer(raw, dtype=np.int8, count=count, offset=pos)
        pos += count
        scales = np.frombuffer(raw, dtype="<f4", count=count // group, offset=pos)
        pos += 4 * (count // group)
        return (q.reshape(-1, group).astype(np.float64) * scales[:, None]).reshape(shape)

    w = {}
    mats = [("wq", (dim, dim)), ("wk", (kv, dim)), ("wv", (kv, dim)), ("wo", (dim, dim)),
            ("w1", (hidden, dim)), ("w2", (dim, hidden)), ("w3", (hidden, dim))]
    if version == 0:
        w["emb"] = floats(vocab, dim)
        w["att_norm"] = floats(layers, dim)
        for name, shape in mats[:4]:
            w[name] = floats(layers, *shape)
        w["ffn_norm"] = floats(layers, dim)
        for name, shape in mats[4:]:
            w[name] = floats(layers, *shape)
        w["final_norm"] = floats(dim)
        w["freq_cos"] = floats(seq_len, cfg["head"] // 2)
        w["freq_sin"] = floats(seq_len, cfg["head"] // 2)
        w["cls"] = w["emb"] if shared else floats(vocab, dim)
    else:
        w["att_norm"] = floats(layers, dim)
        w["ffn_norm"] = floats(layers, dim)
        w["final_norm"] = floats(dim)
        w["emb"] = q80(vocab, dim)
        for name, shape in mats:
            w[name] = np.stack([q80(*shape) for _ in range(layers)])
        w["cls"] = w["emb"] if shared else q80(vocab, dim)
    assert pos == len(raw), f"{len(raw) - pos} bytes left over: the layout is not what was read"
    return cfg, w


def read_runc_tokenizer(path: Path, vocab_size: int) -> tuple[int, list[bytes], list[float]]:
    raw = Path(path).read_bytes()
    max_len = struct.unpack_from("<i", raw, 0)[0]
    pos, pieces, scores = 4, [], []
    for _ in range(vocab_size):
        score, length = struct.unpack_from("<fi", raw, pos)
        pos += 8
        pieces.append(raw[pos:pos + length])
        scores.append(score)
        pos += length
    assert pos == len(raw)
    return max_len, pieces, scores


def rmsnorm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def reference_forward(cfg: dict, w: dict, tokens: list[int], eps=1e-5, theta=10000.0) -> np.ndarray:
    """Logits for every position, computed as run.c does: rotate adjacent pairs (2j, 2j+1)."""
    heads, kv_heads, head = cfg["heads"], cfg["kv_heads"], cfg["head"]
    steps = len(tokens)
    x = w["emb"][tokens]
    freqs = 1.0 / theta ** (np.arange(0, head, 2) / head)
    angle = np.arange(steps)[:, None] * freqs[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]

    def rotate(t):
        even, odd = t[..., 0::2], t[..., 1::2]
        out = np.empty_like(t)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    causal = np.triu(np.full((steps, steps), -np.inf), 1)
    for layer in range(cfg["layers"]):
        h = rmsnorm(x, w["att_norm"][layer], eps)
        q = rotate((h @ w["wq"][layer].T).reshape(steps, heads, head))
        k = rotate((h @ w["wk"][layer].T).reshape(steps, kv_heads, head))
        v = (h @ w["wv"][layer].T).reshape(steps, kv_heads, head)
        out = np.empty_like(q)
        for hd in range(heads):
            kv = hd // (heads // kv_heads)
            att = q[:, hd] @ k[:, kv].T / np.sqrt(head) + causal
            att = np.exp(att - att.max(-1, keepdims=True))
            out[:, hd] = (att / att.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + out.reshape(steps, -1) @ w["wo"][layer].T
        h = rmsnorm(x, w["ffn_norm"][layer], eps)
        gate = h @ w["w1"][layer].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w["w3"][layer].T)) @ w["w2"][layer].T
    return rmsnorm(x, w["final_norm"], eps) @ w["cls"].T


def from_interleaved(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo the export permutation, written independently: pair rows (2j, 2j+1) go to (j, j + head/2)."""
    rows, cols = weight.shape
    head = rows // n_heads
    out = np.empty_like(weight)
    for h in range(n_heads):
        block = weight[h * head:(h + 1) * head]
        out[h * head:h * head + head // 2] = block[0::2]
        out[h * head + head // 2:(h + 1) * head] = block[1::2]
    return out


def babyllama_logits(model: Llama, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([tokens]))[0].double().numpy()


PROMPT_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside!"


# --------------------------------------------------------------------------- llama2.c tests


def test_llama2c_v0_round_trip_gives_identical_weights(exported):
    model, cfg_model = exported["model"], exported["model"].config
    cfg, w = read_llama2c(exported["v0"][0])
    assert (cfg["dim"], cfg["hidden"], cfg["layers"], cfg["heads"], cfg["kv_heads"], cfg["vocab"], cfg["seq_len"]) == \
        (cfg_model.dim, cfg_model.hidden_dim, cfg_model.n_layers, cfg_model.n_heads, cfg_model.n_kv_heads,
         cfg_model.vocab_size, cfg_model.max_seq_len)
    assert cfg["shared"] == exported["tie"]
    state = {k: v.double().numpy() for k, v in model.state_dict().items()}
    assert np.array_equal(w["emb"], state["model.embed_tokens.weight"])
    assert np.array_equal(w["cls"], state["lm_head.weight"])
    assert np.array_equal(w["final_norm"], state["model.norm.weight"])
    names = {"wv": "self_attn.v_proj", "wo": "self_attn.o_proj", "w1": "mlp.gate_proj", "w2": "mlp.down_proj",
             "w3": "mlp.up_proj", "att_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for layer in range(cfg["layers"]):
        prefix = f"model.layers.{layer}."
        assert np.array_equal(from_interleaved(w["wq"][layer], cfg["heads"]), state[prefix + "self_attn.q_proj.weight"])
        assert np.array_equal(from_interleaved(w["wk"][layer], cfg["kv_heads"]),
                              state[prefix + "self_attn.k_proj.weight"])
        for ours, theirs in names.items():
            assert np.array_equal(w[ours][layer], state[prefix + theirs + ".weight"]), ours
    # the (skipped by run.c) legacy rotary tables hold cos/sin of pos * theta^(-2j/head_dim)
    angle = np.arange(cfg["seq_len"])[:, None] / 10000.0 ** (np.arange(0, cfg["head"], 2) / cfg["head"])
    assert np.allclose(w["freq_cos"], np.cos(angle), atol=1e-5) and np.allclose(w["freq_sin"], np.sin(angle), atol=1e-5)


def test_llama2c_v0_forward_reproduces_babyllama_logits(exported, tokenizer):
    cfg, w = read_llama2c(exported["v0"][0])
    tokens = [1] + tokenizer.encode(PROMPT_TEXT)[:40]
    ours = babyllama_logits(exported["model"], tokens)
    theirs = reference_forward(cfg, w, tokens)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4
    # and the permutation matters: without it the reference disagrees
    unpermuted = dict(w, wq=np.stack([from_interleaved(m, cfg["heads"]) for m in w["wq"]]),
                      wk=np.stack([from_interleaved(m, cfg["kv_heads"]) for m in w["wk"]]))
    assert np.abs(ours - reference_forward(cfg, unpermuted, tokens)).max() > 1e-2


def test_llama2c_v2_int8_weights_and_logits(exported, tokenizer):
    cfg, w = read_llama2c(exported["v2"][0])
    _, w0 = read_llama2c(exported["v0"][0])
    assert cfg["version"] == 2 and cfg["shared"] == exported["tie"]
    assert cfg["dim"] % cfg["group"] == 0 and cfg["hidden"] % cfg["group"] == 0
    for name in ("att_norm", "ffn_norm", "final_norm"):
        assert np.array_equal(w[name], w0[name])  # norms stay float32
    for name in ("emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "cls"):
        exact = w0[name].reshape(-1, cfg["group"])
        bound = np.abs(exact).max(1, keepdims=True) / 127 / 2 * 1.0001  # half a quantization step per group
        assert (np.abs(w[name].reshape(-1, cfg["group"]) - exact) <= bound + 1e-9).all(), name
    tokens = [1] + tokenizer.encode(PROMPT_TEXT)[:40]
    ours = babyllama_logits(exported["model"], tokens)
    quantized = reference_forward(cfg, w, tokens)
    assert np.abs(ours - quantized).max() < 0.05 * np.abs(ours).max()
    assert (ours.argmax(-1) == quantized.argmax(-1)).mean() > 0.9
    assert Path(exported["v2"][1]).name == "model_q80.tokenizer.bin"


# A Python model of run.c's tokenizer behaviour (from its documented algorithm), to check the tokenizer file.

def runc_encode(text: str, pieces: list[bytes], scores: list[float]) -> list[int]:
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    tokens = []
    if text:
        tokens.append(lookup[b" "])  # run.c's SentencePiece-style dummy prefix
    for ch in text:
        encoded = ch.encode("utf-8")
        if encoded in lookup:
            tokens.append(lookup[encoded])
        else:
            tokens.extend(b + 3 for b in encoded)  # byte fallback: byte b is token 3 + b
    while True:
        best, best_id, best_at = -1e10, None, None
        for i in range(len(tokens) - 1):
            merged = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]])
            if merged is not None and scores[merged] > best:
                best, best_id, best_at = scores[merged], merged, i
        if best_id is None:
            return tokens
        tokens[best_at:best_at + 2] = [best_id]


def runc_decode(tokens: list[int], pieces: list[bytes], start: int = 1) -> bytes:
    out, prev = b"", start
    for token in tokens:
        piece = pieces[token]
        if prev == 1 and piece.startswith(b" "):
            piece = piece[1:]
        if piece.startswith(b"<0x") and piece.endswith(b">") and len(piece) == 6:
            piece = bytes([int(piece[3:5], 16)])
        if len(piece) == 1 and not (chr(piece[0]).isprintable() and piece[0] < 0x7F or piece in b" \t\n\r\x0b\x0c"):
            piece = b""  # safe_printf skips single non-printable bytes
        out += piece
        prev = token
    return out


def test_llama2c_tokenizer_file(exported, tokenizer, tinystories):
    vocab = exported["model"].config.vocab_size
    max_len, pieces, scores = read_runc_tokenizer(exported["v0"][1], vocab)
    assert max_len == max(len(p) for p in pieces)
    assert len(pieces) == vocab and len(set(pieces)) == vocab  # run.c looks pieces up by text
    assert pieces[1] == b"\n<s>\n"
    assert pieces[3 + ord("a")] == b"a" and pieces[3 + 0x0A] == b"\n" and pieces[3] == b"<0x00>"
    # ordinary text decodes as babyllama decodes it (the space after BOS dropped, EOS invisible)
    lines = (tinystories / "valid.txt").read_text(encoding="utf-8").splitlines()[:40]
    for line in lines:
        ids = tokenizer.encode(line)
        assert runc_decode(ids + [tokenizer.eos_id], pieces).decode("utf-8") == tokenizer.decode(ids).lstrip(" ")
        # run.c's greedy score merges reproduce the BPE segmentation (of " " + text: its dummy prefix)
        if line and line.isascii():
            assert runc_encode(line, pieces, scores) == tokenizer.encode(" " + line), line


def test_llama2c_greedy_tokens_match_babyllama(exported, tokenizer):
    from babyllama.infer.generate import generate

    cfg, w = read_llama2c(exported["v0"][0])
    ids = [1]
    for _ in range(24):  # greedy decoding with the reference forward, as run.c -t 0 does
        ids.append(int(reference_forward(cfg, w, ids)[-1].argmax()))
    with torch.no_grad():
        ours = generate(exported["model"], [[1]], 24, temperature=0.0)[0]
    assert ids[1:] == list(ours)


def test_llama2c_rejects_what_runc_cannot_run(tmp_path, tokenizer):
    from babyllama.errors import BabyLlamaError
    from babyllama.export.llama2c import export_llama2c

    model = Llama(ModelConfig(**SHAPE, vocab_size=tokenizer.vocab_size, rope_theta=500000.0))
    folder = save_model(model, tmp_path / "m", tokenizer)
    with pytest.raises(BabyLlamaError, match="rope_theta"):
        export_llama2c(folder, tmp_path / "out", log=lambda _: None)
    with pytest.raises(BabyLlamaError, match="version"):
        export_llama2c(folder, tmp_path / "out", version=1)


# --------------------------------------------------------------------------- GGUF tests


def gguf_field(reader, key):
    field = reader.fields[key]
    return field.contents()


@pytest.mark.parametrize("kind", ["f32", "f16", "q8_0"])
def test_gguf_metadata_and_tensors(exported, tokenizer, kind):
    import gguf
    from babyllama.export.llama2c import to_interleaved
    from babyllama.export.vocab import vocab_info

    reader = gguf.GGUFReader(exported[kind])
    model, cfg = exported["model"], exported["model"].config
    assert gguf_field(reader, "general.architecture") == "llama"
    expect = {"llama.embedding_length": cfg.dim, "llama.block_count": cfg.n_layers,
              "llama.feed_forward_length": cfg.hidden_dim, "llama.attention.head_count": cfg.n_heads,
              "llama.attention.head_count_kv": cfg.n_kv_heads, "llama.context_length": cfg.max_seq_len,
              "llama.rope.dimension_count": cfg.head_dim, "llama.vocab_size": cfg.vocab_size,
              "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
              "tokenizer.ggml.padding_token_id": tokenizer.pad_id}
    for key, value in expect.items():
        assert gguf_field(reader, key) == value, key
    assert gguf_field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg.norm_eps)
    assert gguf_field(reader, "llama.rope.freq_base") == pytest.approx(cfg.rope_theta)
    assert gguf_field(reader, "tokenizer.ggml.model") == "gpt2"
    assert gguf_field(reader, "tokenizer.ggml.pre") == "gpt-2"
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    info = vocab_info(tokenizer)
    assert len(tokens) == cfg.vocab_size and tokens[:tokenizer.vocab_size] == info.tokens
    assert gguf_field(reader, "tokenizer.ggml.merges") == info.merges
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    assert types[1] == gguf.TokenType.CONTROL and types[tokenizer.vocab_size - 1] == gguf.TokenType.NORMAL
    assert all(t == gguf.TokenType.UNUSED for t in types[tokenizer.vocab_size:])

    want = {"token_embd.weight": model.model.embed_tokens.weight, "output_norm.weight": model.model.norm.weight}
    if not exported["tie"]:
        want["output.weight"] = model.lm_head.weight
    for i, block in enumerate(model.model.layers):
        want[f"blk.{i}.attn_q.weight"] = to_interleaved(block.self_attn.q_proj.weight, cfg.n_heads)
        want[f"blk.{i}.attn_k.weight"] = to_interleaved(block.self_attn.k_proj.weight, cfg.n_kv_heads)
        want[f"blk.{i}.attn_v.weight"] = block.self_attn.v_proj.weight
        want[f"blk.{i}.attn_output.weight"] = block.self_attn.o_proj.weight
        want[f"blk.{i}.ffn_gate.weight"] = block.mlp.gate_proj.weight
        want[f"blk.{i}.ffn_up.weight"] = block.mlp.up_proj.weight
        want[f"blk.{i}.ffn_down.weight"] = block.mlp.down_proj.weight
        want[f"blk.{i}.attn_norm.weight"] = block.input_layernorm.weight
        want[f"blk.{i}.ffn_norm.weight"] = block.post_attention_layernorm.weight
    found = {t.name: t for t in reader.tensors}
    assert set(found) == set(want)
    for name, tensor in want.items():
        expected = tensor.detach().float().numpy()
        t = found[name]
        assert list(t.shape) == list(reversed(expected.shape)), name  # GGUF lists dims innermost first
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(expected.shape)
        if expected.ndim == 1 or kind == "f32":
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            assert np.array_equal(values, expected), name
        elif kind == "f16":
            assert t.tensor_type == gguf.GGMLQuantizationType.F16
            assert np.array_equal(values, expected.astype(np.float16).astype(np.float32)), name
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
            blocks = expected.reshape(-1, 32)
            step = np.abs(blocks).max(1, keepdims=True) / 127
            assert (np.abs(values.reshape(-1, 32) - blocks) <= step * 0.57 + 1e-6).all(), name  # fp16 scale: +127 * 2^-11


def test_gguf_chat_template_and_end_of_turn(exported, tokenizer):
    """A chat model's template travels (minus transformers' {% generation %} markers, which render nothing)."""
    import gguf
    from jinja2 import Template
    from transformers import AutoTokenizer

    reader = gguf.GGUFReader(exported["f16"])
    assert gguf_field(reader, "tokenizer.ggml.eot_token_id") == tokenizer.token_id("<|end|>")
    template = gguf_field(reader, "tokenizer.chat_template")
    assert "{% generation %}" not in template and "endgeneration" not in template
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    hf = AutoTokenizer.from_pretrained(str(exported["folder"]))
    expected = hf.apply_chat_template(chat, tokenize=False)
    assert Template(template).render(messages=chat, bos_token="<s>", add_generation_prompt=False) == expected


def test_shapes_that_do_not_split_into_blocks(tmp_path, tokenizer):
    """hidden_dim 80: GGUF q8_0 keeps ffn_down (rows of 80) in f16; llama2.c int8 picks groups of 16."""
    import gguf
    from babyllama.export.gguf import export_gguf
    from babyllama.export.llama2c import export_llama2c

    torch.manual_seed(1)
    model = Llama(ModelConfig(**{**SHAPE, "hidden_dim": 80}, vocab_size=tokenizer.vocab_size)).eval()
    folder = save_model(model, tmp_path / "m", tokenizer)
    reader = gguf.GGUFReader(export_gguf(folder, tmp_path / "m.gguf", "q8_0"))
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.Q8_0
    cfg, w = read_llama2c(export_llama2c(folder, tmp_path / "q.bin", version=2, log=lambda _: None)[0])
    assert cfg["group"] == 16
    tokens = [1] + tokenizer.encode(PROMPT_TEXT)[:20]
    ours = babyllama_logits(model, tokens)
    assert np.abs(reference_forward(cfg, w, tokens) - ours).max() < 0.05 * np.abs(ours).max()


def test_gguf_forward_reproduces_babyllama_logits(exported, tokenizer):
    """The f32 GGUF's tensors, run in llama.cpp's (adjacent-pair) convention, give babyllama's logits."""
    import gguf

    reader = gguf.GGUFReader(exported["f32"])
    t = {x.name: np.asarray(x.data, dtype=np.float64).reshape(list(reversed(x.shape.tolist()))) for x in reader.tensors}
    cfg_model = exported["model"].config
    layers = range(cfg_model.n_layers)
    w = {"emb": t["token_embd.weight"], "final_norm": t["output_norm.weight"],
         "cls": t.get("output.weight", t["token_embd.weight"])}
    for ours, theirs in {"att_norm": "attn_norm", "ffn_norm": "ffn_norm", "wq": "attn_q", "wk": "attn_k",
                         "wv": "attn_v", "wo": "attn_output", "w1": "ffn_gate", "w2": "ffn_down", "w3": "ffn_up"}.items():
        w[ours] = np.stack([t[f"blk.{i}.{theirs}.weight"] for i in layers])
    cfg = dict(heads=cfg_model.n_heads, kv_heads=cfg_model.n_kv_heads, head=cfg_model.head_dim, layers=cfg_model.n_layers)
    tokens = [1] + tokenizer.encode(PROMPT_TEXT)[:40]
    eps = float(gguf_field(reader, "llama.attention.layer_norm_rms_epsilon"))
    theta = float(gguf_field(reader, "llama.rope.freq_base"))
    assert np.abs(babyllama_logits(exported["model"], tokens) - reference_forward(cfg, w, tokens, eps, theta)).max() < 1e-4


def test_cli_exports(exported, tmp_path):
    from babyllama.cli import main

    for argv in (["--format", "llama2c", "--out", str(tmp_path / "a")],
                 ["--format", "llama2c", "--llama2c_version", "2", "--out", str(tmp_path / "q.bin")],
                 ["--format", "gguf", "--gguf_type", "q8_0", "--out", str(tmp_path)]):
        with pytest.raises(SystemExit) as done:
            main(["export", "--model", str(exported["folder"]), *argv])
        assert done.value.code == 0
    assert (tmp_path / "a" / "model.bin").read_bytes() == Path(exported["v0"][0]).read_bytes()
    assert (tmp_path / "a" / "tokenizer.bin").read_bytes() == Path(exported["v0"][1]).read_bytes()
    assert (tmp_path / "q.bin").read_bytes() == Path(exported["v2"][0]).read_bytes()
    assert (tmp_path / "model-q8_0.gguf").stat().st_size > 0


# --------------------------------------------------------------------------- llama.cpp itself, when installed


def test_llama_cpp_runs_gguf_greedy(exported, tokenizer):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(exported["f32"]), n_ctx=SHAPE["max_seq_len"], verbose=False,
                          logits_all=True)
    prompt = tokenizer.encode("Once upon a time")
    assert llm.tokenize(b"Once upon a time", add_bos=False, special=False) == prompt
    tokens = [1] + prompt
    llm.eval(tokens)
    theirs = np.array(llm.scores[:len(tokens)], dtype=np.float64)
    ours = babyllama_logits(exported["model"], tokens)
    assert np.abs(theirs - ours).max() < 1e-2
    from babyllama.infer.generate import generate

    with torch.no_grad():
        greedy = generate(exported["model"], [tokens], 16, temperature=0.0)[0]
    llm.reset()
    out = []
    for token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
        out.append(token)
        if len(out) == 16:
            break
    assert out == list(greedy)


def test_export_from_a_trained_run_folder(tiny_run, tmp_path):
    """The usual path: a run folder (its model/ and tokenizer) straight to llama2.c and GGUF."""
    import gguf
    from babyllama.export.gguf import export_gguf
    from babyllama.export.llama2c import export_llama2c
    from babyllama.modelio import load_model

    model, tokenizer, _ = load_model(tiny_run)
    model_file, tok_file = export_llama2c(tiny_run, tmp_path / "l2c", log=lambda _: None)
    cfg, w = read_llama2c(model_file)
    tokens = [1] + tokenizer.encode(PROMPT_TEXT)[:40]
    assert np.abs(reference_forward(cfg, w, tokens) - babyllama_logits(model.eval(), tokens)).max() < 1e-4
    _, pieces, _ = read_runc_tokenizer(tok_file, cfg["vocab"])
    ids = tokenizer.encode(PROMPT_TEXT)
    assert runc_decode(ids, pieces).decode("utf-8") == PROMPT_TEXT
    reader = gguf.GGUFReader(export_gguf(tiny_run, tmp_path, "q8_0"))
    assert reader.fields["general.name"].contents() == Path(tiny_run).name
