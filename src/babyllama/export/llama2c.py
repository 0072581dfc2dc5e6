"""Export to karpathy's llama2.c: the model `.bin` that `run.c` (float32) or `runq.c` (int8) reads, and its
tokenizer `.bin`.

Model file, "version 0" (legacy, read by run.c): seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len; vocab_size is negative when the classifier is not the embedding), then float32 arrays in
run.c's order: embedding, attention norms, wq, wk, wv, wo, ffn norms, w1 (gate), w2 (down), w3 (up), final
norm, the rotary cos and sin tables (seq_len x head_dim/2 each, skipped by run.c), and the classifier if not shared.

"Version 2" (read by runq.c): a 256-byte header (magic "ak42", version 2, the seven ints with a positive
vocab_size, a shared-classifier byte, the int8 group size), the float32 norms, then each matrix as int8 values
followed by one float32 scale per group (symmetric Q8_0).

Rotary layout: babyllama (like Hugging Face) rotates the two halves of each head, dims (j, j + head_dim/2);
run.c rotates adjacent pairs (2j, 2j+1) with the same frequency theta^(-2j/head_dim). So on export the rows of
wq and wk are reordered within each head: new row 2j takes old row j, new row 2j+1 takes old row j + head_dim/2.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch

from babyllama.data.tokenizer import BabyTokenizer
from babyllama.errors import BabyLlamaError
from babyllama.export.vocab import BYTE_TOKEN, vocab_info
from babyllama.model import Llama

MAGIC = 0x616B3432  # "ak42" in llama2.c's versioned headers
HEADER_BYTES = 256
RUNC_NORM_EPS = 1e-5     # run.c hard-codes both
RUNC_ROPE_THETA = 10000.0


def to_interleaved(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection from rotate-half order to adjacent-pair order (see the module docstring)."""
    out_features, in_features = weight.shape
    head_dim = out_features // n_heads
    # (head, half, j, in) -> (head, j, half, in): row 2j + half of a head is old row half * head_dim/2 + j.
    return weight.reshape(n_heads, 2, head_dim // 2, in_features).transpose(1, 2).reshape(out_features, in_features)


def shares_classifier(model: Llama) -> bool:
    return model.config.tie_embeddings or torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def _check_runc_compatible(model: Llama, warn: Callable[[str], None]) -> None:
    cfg = model.config
    if cfg.rope_theta != RUNC_ROPE_THETA:
        raise BabyLlamaError(f"run.c hard-codes rope_theta {RUNC_ROPE_THETA:g}; this model uses {cfg.rope_theta:g}, "
                             f"so run.c would compute wrong outputs. Export to GGUF or Hugging Face instead")
    if cfg.norm_eps != RUNC_NORM_EPS:
        warn(f"warning: run.c hard-codes RMSNorm eps {RUNC_NORM_EPS:g}; this model uses {cfg.norm_eps:g} "
             f"(outputs will differ slightly)")


def _matrices(model: Llama) -> dict[str, list[torch.Tensor]]:
    """The per-layer matrices in run.c's naming, q/k already in run.c's rotary layout."""
    cfg = model.config
    layers = model.model.layers
    return {
        "wq": [to_interleaved(b.self_attn.q_proj.weight, cfg.n_heads) for b in layers],
        "wk": [to_interleaved(b.self_attn.k_proj.weight, cfg.n_kv_heads) for b in layers],
        "wv": [b.self_attn.v_proj.weight for b in layers],
        "wo": [b.self_attn.o_proj.weight for b in layers],
        "w1": [b.mlp.gate_proj.weight for b in layers],
        "w2": [b.mlp.down_proj.weight for b in layers],
        "w3": [b.mlp.up_proj.weight for b in layers],
    }


def _f32(file: BinaryIO, tensor: torch.Tensor) -> None:
    file.write(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def _header_ints(model: Llama, vocab_size: int) -> bytes:
    cfg = model.config
    return struct.pack("7i", cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, vocab_size,
                       cfg.max_seq_len)


def write_model_v0(model: Llama, path: Path) -> None:
    cfg, body = model.config, model.model
    shared = shares_classifier(model)
    half = cfg.head_dim // 2
    with open(path, "wb") as f:
        f.write(_header_ints(model, cfg.vocab_size if shared else -cfg.vocab_size))
        _f32(f, body.embed_tokens.weight)
        for block in body.layers:
            _f32(f, block.input_layernorm.weight)
        mats = _matrices(model)
        for name in ("wq", "wk", "wv", "wo"):
            for w in mats[name]:
                _f32(f, w)
        for block in body.layers:
            _f32(f, block.post_attention_layernorm.weight)
        for name in ("w1", "w2", "w3"):
            for w in mats[name]:
                _f32(f, w)
        _f32(f, body.norm.weight)
        # The rotate-half tables repeat each frequency twice; run.c's legacy layout wants each once.
        _f32(f, model.rope_cos[:cfg.max_seq_len, :half])
        _f32(f, model.rope_sin[:cfg.max_seq_len, :half])
        if not shared:
            _f32(f, model.lm_head.weight)


def group_size_for(model: Llama, largest: int = 64) -> int:
    """The largest power of two <= largest that divides every matmul's input width (runq.c needs it)."""
    size = largest
    while model.config.dim % size or model.config.hidden_dim % size:
        size //= 2
    return size


def quantize_q80(weight: torch.Tensor, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per group of group_size consecutive values: w ~= q * scale, scale = max|w| / 127."""
    groups = weight.detach().to("cpu", torch.float32).reshape(-1, group_size).numpy()
    scale = np.abs(groups).max(axis=1) / 127.0
    safe = np.where(scale > 0, scale, 1.0)  # all-zero groups: q = 0, scale = 0
    q = np.round(groups / safe[:, None]).astype(np.int8)
    return q.reshape(-1), scale.astype(np.float32)


def write_model_v2(model: Llama, path: Path) -> int:
    cfg, body = model.config, model.model
    shared = shares_classifier(model)
    group_size = group_size_for(model)
    header = struct.pack("I", MAGIC) + struct.pack("i", 2) + _header_ints(model, cfg.vocab_size) + \
        struct.pack("B", int(shared)) + struct.pack("i", group_size)
    with open(path, "wb") as f:
        f.write(header + b"\0" * (HEADER_BYTES - len(header)))
        for block in body.layers:
            _f32(f, block.input_layernorm.weight)
        for block in body.layers:
            _f32(f, block.post_attention_layernorm.weight)
        _f32(f, body.norm.weight)
        mats = _matrices(model)
        matrices = [body.embed_tokens.weight] + [w for name in ("wq", "wk", "wv", "wo", "w1", "w2", "w3")
                                                 for w in mats[name]]
        if not shared:
            matrices.append(model.lm_head.weight)
        for w in matrices:
            q, scale = quantize_q80(w, group_size)
            f.write(q.tobytes())
            f.write(scale.tobytes())
    return group_size


# --------------------------------------------------------------------------- tokenizer


def runc_pieces(tokenizer: BabyTokenizer, vocab_size: int) -> tuple[list[bytes], list[float]]:
    """Token texts and scores as run.c uses them.

    run.c decodes a token by printing its piece (a "<0xXX>" piece prints that byte) and encodes a prompt by
    looking up single characters, then repeatedly merging the adjacent pair whose concatenated pieces form the
    highest-scoring token. So: pieces are the plain text of tokens, merged tokens score -merge rank, and our
    raw-byte tokens (3..258) are their own byte where possible -- written as "<0xXX>" they could never merge.
    Control bytes stay "<0xXX>" (a NUL cannot be in a C string). BOS is never printed (run.c stops on it);
    EOS gets a one-byte, non-printable piece that run.c's safe printer skips, so its text equals ours.
    """
    info = vocab_info(tokenizer)
    pieces: list[bytes] = []
    for token_id, token in enumerate(info.tokens):
        if token_id == info.bos_id:
            pieces.append(b"\n<s>\n")
        elif token_id == info.eos_id:
            pieces.append(b"\x03")
        elif token_id in info.special:
            pieces.append(token.encode("utf-8"))
        elif not info.byte_level and BYTE_TOKEN.match(token):
            pieces.append(token.encode("ascii"))  # SentencePiece vocabularies also hold every character
        else:
            raw = info.token_bytes(token_id)
            if len(raw) == 1 and (raw[0] < 0x20 and raw not in (b"\t", b"\n", b"\r") or raw[0] == 0x7F):
                raw = f"<0x{raw[0]:02X}>".encode("ascii")
            pieces.append(raw or f"<0x{token_id:X}?>".encode("ascii"))
    scores = list(info.scores)
    for extra in range(len(pieces), vocab_size):  # a model vocabulary padded beyond the tokenizer's
        pieces.append(f"<extra_{extra}>".encode("ascii"))
        scores.append(0.0)
    return pieces[:vocab_size], scores[:vocab_size]


def write_tokenizer(tokenizer: BabyTokenizer, vocab_size: int, path: Path) -> None:
    """max_token_length (int32), then per token: score (float32), length (int32), bytes."""
    pieces, scores = runc_pieces(tokenizer, vocab_size)
    with open(path, "wb") as f:
        f.write(struct.pack("i", max(len(p) for p in pieces)))
        for piece, score in zip(pieces, scores):
            f.write(struct.pack("fi", score, len(piece)))
            f.write(piece)


# --------------------------------------------------------------------------- entry point


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """--out DIR gives DIR/model.bin and DIR/tokenizer.bin (run.c's default names); --out NAME.bin gives
    NAME.bin and NAME.tokenizer.bin next to it."""
    out = Path(out)
    if out.suffix == ".bin":
        return out, out.with_name(out.stem + ".tokenizer.bin")
    return out / "model.bin", out / "tokenizer.bin"


def export_llama2c(model_path: str | Path, out: str | Path, version: int = 0,
                   log: Callable[[str], None] = print) -> tuple[Path, Path]:
    from babyllama.modelio import load_model

    if version not in (0, 2):
        raise BabyLlamaError(f"llama2.c version {version} is not supported: use 0 (float32, run.c) or 2 (int8, runq.c)")
    model, tokenizer, _ = load_model(model_path)
    _check_runc_compatible(model, log)
    if tokenizer.bos_id != 1:
        raise BabyLlamaError(f"run.c starts from and stops at token 1, but this tokenizer's BOS is {tokenizer.bos_id}")
    model_file, tokenizer_file = output_paths(out)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if version == 0:
            write_model_v0(model, model_file)
        else:
            write_model_v2(model, model_file)
    write_tokenizer(tokenizer, model.config.vocab_size, tokenizer_file)
    return model_file, tokenizer_file


def read_header(path: str | Path) -> dict:
    """The shape a llama2.c model file declares (either version): handy for checks and messages."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if struct.unpack("I", head[:4])[0] == MAGIC:
        version = struct.unpack("i", head[4:8])[0]
        ints = struct.unpack("7i", head[8:36])
        shared = bool(head[36])
    else:
        version, ints = 0, struct.unpack("7i", head[:28])
        shared = ints[5] > 0
    keys = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    out = dict(zip(keys, ints), version=version, shared_classifier=shared)
    out["vocab_size"] = abs(out["vocab_size"])
    return out

