"""Models on disk, in Hugging Face's layout: config.json + model.safetensors (+ tokenizer files).

The same layout serves checkpoints, a run's final `model/` and exports, so `--model` anywhere accepts a run
folder, a checkpoint folder or any local Hugging Face Llama folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file

from babyllama.config import ModelConfig
from babyllama.data.tokenizer import BabyTokenizer, load_tokenizer
from babyllama.errors import BabyLlamaError
from babyllama.layout import WEIGHTS, is_adapter_folder, read_weights, resolve_model_folder, tokenizer_folder
from babyllama.layout import verify_model_folder
from babyllama.model import Llama
from babyllama.tune.hfmodel import load_hf_model

__all__ = ["WEIGHTS", "is_adapter_folder", "resolve_model_folder", "load_model", "save_model", "save_weights",
           "weights_to_save", "find_tokenizer", "hf_config_dict", "model_config_from_hf"]


def _as_stored(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as Hugging Face stores it: a tied classifier is not written twice."""
    state = {k: v.detach().contiguous() for k, v in state.items()}
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def weights_to_save(model: Llama) -> dict[str, torch.Tensor]:
    return _as_stored(model.config, model.state_dict())


def hf_config_dict(config: ModelConfig, tokenizer: Optional[BabyTokenizer] = None) -> dict:
    """The `LlamaConfig` that describes our model, made by transformers itself so every field is current."""
    from transformers import LlamaConfig

    hf = LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim, intermediate_size=config.hidden_dim,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads, head_dim=config.head_dim, hidden_act="silu",
        max_position_embeddings=config.max_seq_len, rms_norm_eps=config.norm_eps, rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings, attention_bias=False, mlp_bias=False,
        attention_dropout=config.dropout, torch_dtype="float32",
        bos_token_id=tokenizer.bos_id if tokenizer else 1, eos_token_id=tokenizer.eos_id if tokenizer else 2,
        pad_token_id=tokenizer.pad_id if tokenizer else None,
    )
    out = hf.to_dict()
    out["architectures"] = ["LlamaForCausalLM"]
    return out


def save_model(model: Llama, folder: str | Path, tokenizer: Optional[BabyTokenizer] = None) -> Path:
    """Write config.json, model.safetensors, generation_config.json and (given one) the tokenizer."""
    return save_weights(model.config, model.state_dict(), folder, tokenizer)


def save_weights(config: ModelConfig, state: dict[str, torch.Tensor], folder: str | Path,
                 tokenizer: Optional[BabyTokenizer] = None) -> Path:
    """save_model from a config and a (whole, single-process) state dict."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config_dict(config, tokenizer), indent=2))
    weights = {k: v.to("cpu") for k, v in _as_stored(config, state).items()}
    save_file(weights, str(folder / WEIGHTS), metadata={"format": "pt"})
    if tokenizer is not None:
        generation = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
                      "pad_token_id": tokenizer.pad_id, "do_sample": True, "temperature": 0.8, "top_p": 0.95}
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
        tokenizer.save(folder)
    return folder


def model_config_from_hf(hf: dict, where: Path) -> ModelConfig:
    if hf.get("model_type", "llama") != "llama":
        raise BabyLlamaError(f"{where}/config.json describes a '{hf.get('model_type')}' model; babyllama loads Llama models")
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if rope_type not in ("default", None):
        raise BabyLlamaError(f"{where}: rope scaling '{rope_type}' is not supported")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise BabyLlamaError(f"{where}: attention/MLP biases are not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise BabyLlamaError(f"{where}: activation '{hf['hidden_act']}' is not supported (Llama uses silu)")
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    if head_dim * heads != hf["hidden_size"]:
        raise BabyLlamaError(f"{where}: head_dim * num_attention_heads != hidden_size is not supported")
    return ModelConfig(
        dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads, vocab_size=hf["vocab_size"],
        hidden_dim=hf["intermediate_size"], max_seq_len=hf.get("max_position_embeddings", 2048),
        norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        dropout=0.0, tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


def find_tokenizer(folder: Path) -> Optional[BabyTokenizer]:
    where = tokenizer_folder(folder)
    return load_tokenizer(where) if where is not None else None


def _merged_adapter(adapter: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Path]:
    """Base model + adapter merged, as (config, Hugging Face state dict, base folder)."""
    merged, base = load_hf_model(adapter)
    config = model_config_from_hf(json.loads((base / "config.json").read_text()), base)
    return config, merged.state_dict(), base


def load_model(path: str | Path, device: str | torch.device = "cpu",
               need_tokenizer: bool = True) -> tuple[Llama, Optional[BabyTokenizer], Path]:
    folder = resolve_model_folder(path)
    if is_adapter_folder(folder):
        # Callers read the tokenizer and chat template from `folder`: the fine-tune's own, not its base's.
        config, state, base = _merged_adapter(folder)
        tokenizer = find_tokenizer(folder) or find_tokenizer(base)
    else:
        try:
            hf = json.loads((folder / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BabyLlamaError(f"{folder}/config.json is not valid JSON: {err}") from None
        config = model_config_from_hf(hf, folder)
        verify_model_folder(folder)
        state = read_weights(folder)
        tokenizer = find_tokenizer(folder)
    model = Llama(config)
    expected = set(weights_to_save(model))
    missing, unexpected = expected - set(state), set(state) - expected - {"lm_head.weight"}
    if missing or unexpected:
        raise BabyLlamaError(f"{folder}: weights do not match config.json (missing {sorted(missing)[:4]}, "
                             f"unexpected {sorted(unexpected)[:4]})")
    for name, tensor in state.items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue
        target = model.get_parameter(name)
        if target.shape != tensor.shape:
            raise BabyLlamaError(f"{folder}: {name} has shape {tuple(tensor.shape)}, config.json implies "
                                 f"{tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(tensor.to(torch.float32))
    if need_tokenizer and tokenizer is None:
        raise BabyLlamaError(f"no tokenizer (tokenizer.json) found with the model in {folder}")
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise BabyLlamaError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                             f"{config.vocab_size}; they do not belong together")
    return model.to(device), tokenizer, folder
