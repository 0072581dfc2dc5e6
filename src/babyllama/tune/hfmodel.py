"""Models for fine-tuning, in Hugging Face form: load a run folder or HF folder, save (merging LoRA).

A fine-tuning run writes its final model to `model/` as a plain Llama (LoRA adapters merged in), so sample,
chat, eval and export read it like any pretrained run; the adapter alone goes to `adapter/` as PEFT saves it.
A folder holding only an adapter (adapter_config.json) loads as its base model with the adapter merged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from babyllama.data.chat_template import CHAT_TEMPLATE
from babyllama.data.tokenizer import CHAT_TOKENS
from babyllama.errors import BabyLlamaError
from babyllama.layout import ADAPTER, MODEL, is_adapter_folder, resolve_model_folder, run_folder_of
from babyllama.layout import tokenizer_folder as find_tokenizer_folder
from babyllama.layout import verify_model_folder
from babyllama.train.distributed import Distributed


def resolve(path: str | Path) -> tuple[Path, Optional[Path]]:
    """(model folder, adapter folder or None) for a run folder, checkpoint, HF folder or adapter folder."""
    folder = resolve_model_folder(path)
    if is_adapter_folder(folder):
        base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base or not Path(base).exists():
            raise BabyLlamaError(f"{folder} is a LoRA adapter whose base model ({base}) is not on this machine")
        base_folder = resolve_model_folder(base)
        verify_model_folder(base_folder)
        return base_folder, folder
    verify_model_folder(folder)
    return folder, None


def tokenizer_folder(model_folder: Path) -> Path:
    found = find_tokenizer_folder(model_folder)
    if found is None:
        raise BabyLlamaError(f"no tokenizer (tokenizer.json) found with the model in {model_folder}")
    return found


def load_tokenizer(model_folder: Path, chat_template_path: Optional[str] = None):
    """The HF tokenizer, with babyllama's chat template when it has none (tokenizers prepared before templates
    existed): the role tokens are already in its vocabulary, so nothing is resized."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(model_folder)))
    if chat_template_path:
        tokenizer.chat_template = Path(chat_template_path).read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        vocab = tokenizer.get_vocab()
        missing = [t for t in CHAT_TOKENS if t not in vocab]
        if missing:
            raise BabyLlamaError(f"the tokenizer of {model_folder} lacks the chat tokens {missing} and has no chat "
                                 f"template; give one with --chat_template_path FILE.jinja")
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_hf_model(path: str | Path, dtype=None):
    """(model, model folder): a plain `LlamaForCausalLM`, with an adapter merged when the path is one."""
    import torch
    from transformers import AutoModelForCausalLM

    folder, adapter = resolve(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder.resolve()), dtype=dtype or torch.float32)
    except (OSError, ValueError) as err:
        raise BabyLlamaError(f"transformers cannot load {folder}: {err}") from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model, folder


def parent_run(model_folder: Path) -> dict:
    """What the fine-tune started from: the run folder (and its run name) when the model came from one."""
    run = run_folder_of(model_folder)
    if run is not None:
        try:
            data = json.loads((run / "manifest.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}
        return {"path": str(run.resolve()), "run_name": data.get("run_name"), "kind": data.get("kind"),
                "model": str(model_folder.resolve())}
    return {"path": None, "run_name": None, "kind": None, "model": str(model_folder.resolve())}


def save_final(model, tokenizer, run_folder: Path) -> Path:
    """Write model/ (plain weights, adapters merged) and, for LoRA, adapter/ too."""
    group = Distributed.current()
    out = run_folder / MODEL
    if not group.is_main:  # several processes (accelerate launch): the main one writes
        group.barrier()
        return out
    if hasattr(model, "merge_and_unload"):  # a PeftModel
        model.save_pretrained(str(run_folder / ADAPTER))
        tokenizer.save_pretrained(str(run_folder / ADAPTER))
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    group.barrier()
    return out
