"""Export to GGUF (llama.cpp, ollama, LM Studio, llama-cpp-python) with the `gguf` package.

Architecture "llama"; tensor names as llama.cpp's converter writes them; q/k rows permuted to llama.cpp's
adjacent-pair rotary layout (the same permutation as llama2.c, see export/llama2c.py). Norms stay float32;
matrices are f32, f16 or q8_0 (a matrix whose rows do not split into 32-value blocks falls back to f16).

Tokenizer: a byte-level BPE (ours) is written as llama.cpp's "gpt2" model with the GPT-2 pre-tokenizer
regex, its merges and token types; a SentencePiece-style vocabulary (an imported Llama tokenizer) as the
"llama" model with scores and byte tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from babyllama.data.tokenizer import BabyTokenizer
from babyllama.errors import BabyLlamaError
from babyllama.export.llama2c import to_interleaved
from babyllama.export.vocab import BYTE_TOKEN, vocab_info
from babyllama.model import Llama

GGUF_TYPES = ("f32", "f16", "q8_0")


def _tensors(model: Llama) -> list[tuple[str, torch.Tensor]]:
    cfg, body = model.config, model.model
    out = [("token_embd.weight", body.embed_tokens.weight)]
    for i, block in enumerate(body.layers):
        attn, mlp = block.self_attn, block.mlp
        out += [
            (f"blk.{i}.attn_norm.weight", block.input_layernorm.weight),
            (f"blk.{i}.attn_q.weight", to_interleaved(attn.q_proj.weight, cfg.n_heads)),
            (f"blk.{i}.attn_k.weight", to_interleaved(attn.k_proj.weight, cfg.n_kv_heads)),
            (f"blk.{i}.attn_v.weight", attn.v_proj.weight),
            (f"blk.{i}.attn_output.weight", attn.o_proj.weight),
            (f"blk.{i}.ffn_norm.weight", block.post_attention_layernorm.weight),
            (f"blk.{i}.ffn_gate.weight", mlp.gate_proj.weight),
            (f"blk.{i}.ffn_up.weight", mlp.up_proj.weight),
            (f"blk.{i}.ffn_down.weight", mlp.down_proj.weight),
        ]
    out.append(("output_norm.weight", body.norm.weight))
    if not cfg.tie_embeddings:  # llama.cpp reuses token_embd when output.weight is absent
        out.append(("output.weight", model.lm_head.weight))
    return out


def _add_tokenizer(writer, tokenizer: BabyTokenizer, vocab_size: int, chat_template: str | None) -> None:
    import gguf

    info = vocab_info(tokenizer)
    tokens, types = [], []
    for token_id, token in enumerate(info.tokens):
        tokens.append(token)
        if token_id in info.special:
            types.append(gguf.TokenType.CONTROL)
        elif not info.byte_level and BYTE_TOKEN.match(token):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    scores = list(info.scores)
    for extra in range(len(tokens), vocab_size):  # model vocabulary padded beyond the tokenizer
        tokens.append(f"[PAD{extra}]")
        types.append(gguf.TokenType.UNUSED)
        scores.append(0.0)

    if info.byte_level:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")  # our ByteLevel pre-tokenizer splits with GPT-2's regex
        writer.add_token_merges(info.merges)
    else:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_scores(scores)
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    for setter, value in ((writer.add_bos_token_id, info.bos_id), (writer.add_eos_token_id, info.eos_id),
                          (writer.add_unk_token_id, info.unk_id), (writer.add_pad_token_id, info.pad_id)):
        if value is not None:
            setter(value)
    end_of_turn = tokenizer.token_id("<|end|>")
    if end_of_turn is not None:  # llama.cpp's chat mode ends the assistant's turn there
        writer.add_eot_token_id(end_of_turn)
    writer.add_add_bos_token(True)   # like `tokenizer(text)` in transformers: BOS first
    writer.add_add_eos_token(False)
    if chat_template:
        # {% generation %} only marks the assistant's tokens for training (transformers' extension of Jinja);
        # it renders nothing, and llama.cpp's template engine does not know it.
        writer.add_chat_template(re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", chat_template))


def write_gguf(model: Llama, tokenizer: BabyTokenizer, path: Path, gguf_type: str = "f16", name: str = "babyllama",
               chat_template: str | None = None) -> Path:
    import gguf

    if gguf_type not in GGUF_TYPES:
        raise BabyLlamaError(f"--gguf_type {gguf_type} is not supported; choose one of {', '.join(GGUF_TYPES)}")
    Q = gguf.GGMLQuantizationType
    matrix_type = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}[gguf_type]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    cfg = model.config

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.hidden_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, cfg.vocab_size, chat_template)

    block = gguf.GGML_QUANT_SIZES[Q.Q8_0][0]
    for tensor_name, tensor in _tensors(model):
        data = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        kind = Q.F32 if data.ndim == 1 else matrix_type
        if kind == Q.Q8_0 and data.shape[-1] % block:
            kind = Q.F16
        if kind == Q.F32:
            writer.add_tensor(tensor_name, data)
        elif kind == Q.F16:
            writer.add_tensor(tensor_name, data.astype(np.float16))
        else:
            writer.add_tensor(tensor_name, gguf.quants.quantize(data, kind), raw_dtype=kind)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def output_path(out: str | Path, gguf_type: str) -> Path:
    out = Path(out)
    return out if out.suffix == ".gguf" else out / f"model-{gguf_type}.gguf"


def export_gguf(model_path: str | Path, out: str | Path, gguf_type: str = "f16",
                log: Callable[[str], None] = print) -> Path:
    from babyllama.modelio import load_model

    model, tokenizer, folder = load_model(model_path)
    path = output_path(out, gguf_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = folder.parent.name if folder.name == "model" else folder.name
    with torch.no_grad():
        return write_gguf(model, tokenizer, path, gguf_type, name=name, chat_template=_chat_template(folder))


def _chat_template(folder: Path) -> str | None:
    """The Jinja chat template saved with the tokenizer (after SFT), so llama.cpp's chat mode formats turns."""
    import json

    for candidate in (folder / "tokenizer_config.json", folder / "chat_template.jinja"):
        if candidate.is_file():
            if candidate.suffix == ".jinja":
                return candidate.read_text()
            template = json.loads(candidate.read_text()).get("chat_template")
            if isinstance(template, str):
                return template
    return None
