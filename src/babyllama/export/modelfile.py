"""An Ollama Modelfile beside every GGUF export, so `ollama create NAME -f NAME.Modelfile` gives a model that
chats in the format it was fine-tuned on (or, for a base model, just continues the prompt).

The chat template is babyllama's (data/chat_template.py) written in Ollama's Go template syntax:

    <|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|> ... <|assistant|>

without the leading <s>: Ollama adds BOS itself (the GGUF file says add_bos_token). A last assistant message is
left open (Ollama continues it). Generation stops at <|end|> (also the GGUF's end-of-turn token) or </s>.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from babyllama.data.chat_template import END_OF_TURN

CHAT_TEMPLATE_GO = (
    '{{- range $i, $_ := .Messages }}'
    '{{- $last := eq (len (slice $.Messages $i)) 1 }}'
    '{{- if eq .Role "system" }}<|system|>{{ .Content }}<|end|>'
    '{{- else if eq .Role "user" }}<|user|>{{ .Content }}<|end|>'
    '{{- if $last }}<|assistant|>{{ end }}'
    '{{- else if eq .Role "assistant" }}<|assistant|>{{ .Content }}{{ if not $last }}<|end|>{{ end }}'
    '{{- end }}'
    '{{- end }}'
)
COMPLETION_TEMPLATE_GO = "{{ .Prompt }}"
CHAT_STOPS = (END_OF_TURN, "<|user|>", "</s>")


def modelfile_path(out: str | Path, gguf_path: str | Path) -> Path:
    """NAME.Modelfile beside `--out NAME.gguf`; `Modelfile` in the folder when `--out` was a folder."""
    return Path(gguf_path).with_suffix(".Modelfile") if Path(out).suffix == ".gguf" else Path(out) / "Modelfile"


def modelfile_text(gguf_file: str, context: int, chat: bool, generation: Optional[dict] = None) -> str:
    """The Modelfile for a GGUF file (named relative to the Modelfile, as Ollama resolves it)."""
    lines = ["# Ollama: ollama create NAME -f THIS_FILE && ollama run NAME (written by babyllama export)",
             f"FROM ./{gguf_file}", ""]
    template = CHAT_TEMPLATE_GO if chat else COMPLETION_TEMPLATE_GO
    lines.append(f'TEMPLATE """{template}"""')
    lines.append("")
    lines.append(f"PARAMETER num_ctx {context}")
    for stop in CHAT_STOPS if chat else ("</s>",):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    generation = generation or {}
    for key in ("temperature", "top_p", "top_k"):
        if isinstance(generation.get(key), (int, float)):
            lines.append(f"PARAMETER {key} {generation[key]}")
    return "\n".join(lines) + "\n"


def is_chat_model(model_folder: Path) -> bool:
    """A fine-tuned chat model carries its chat template with the tokenizer (a base model has it too when its
    tokenizer reserved the chat tokens, so the run's kind decides when there is a record)."""
    from babyllama.records.registry import run_folder_of

    run = run_folder_of(str(model_folder))
    if run is not None:
        kind = _json(run / "manifest.json").get("kind")
        if kind in ("pretrain", "sft", "dpo"):
            return kind != "pretrain"
    return "chat_template" in _json(model_folder / "tokenizer_config.json")


def has_own_chat_template(model_folder: Path) -> bool:
    """Whether the saved chat template is babyllama's (the one CHAT_TEMPLATE_GO renders)."""
    from babyllama.data.chat_template import CHAT_TEMPLATE

    saved = _json(model_folder / "tokenizer_config.json").get("chat_template")
    if (model_folder / "chat_template.jinja").is_file():
        saved = (model_folder / "chat_template.jinja").read_text(encoding="utf-8")
    return saved in (None, CHAT_TEMPLATE)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_modelfile(model: str | Path, out: str | Path, gguf_path: str | Path) -> Path:
    """The Modelfile for an export of `model` (run, checkpoint or model folder) to gguf_path: context from the
    model's config, chat or completion template by what the model is, sampling defaults from generation_config."""
    from babyllama.modelio import resolve_model_folder

    folder = resolve_model_folder(model)
    context = int(_json(folder / "config.json").get("max_position_embeddings") or 0) or 2048
    path = modelfile_path(out, gguf_path)
    chat = is_chat_model(folder)
    text = modelfile_text(Path(gguf_path).name, context, chat and has_own_chat_template(folder),
                          _json(folder / "generation_config.json"))
    if chat and not has_own_chat_template(folder):
        text = ("# This model was fine-tuned with its own chat template (--chat_template_path): write it as an\n"
                "# Ollama TEMPLATE by hand (https://github.com/ollama/ollama/blob/main/docs/template.md); the one\n"
                "# below only passes the prompt through.\n") + text
    path.write_text(text, encoding="utf-8")
    return path
