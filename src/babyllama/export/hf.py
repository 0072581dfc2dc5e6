"""Export to the Hugging Face layout: what `AutoModelForCausalLM.from_pretrained` loads."""

from __future__ import annotations

from pathlib import Path

from babyllama.modelio import load_model, save_model


def export_hf(model_path: str | Path, out: str | Path) -> Path:
    model, tokenizer, _ = load_model(model_path)
    return save_model(model, out, tokenizer)
