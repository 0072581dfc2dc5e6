"""The resolved-arguments printout, in the style of the `TrainingArguments(...)` dump of the original records:

    PretrainArguments(
    adam_beta1=0.9,
    ...
    report_to=['wandb'],
    )

One block per config section (training, model, LoRA ...), keys sorted, secrets replaced by placeholders.
Printed when a run starts and saved as arguments.txt in its folder.
"""

from __future__ import annotations

from typing import Any

from babyllama.records.redact import redact

# Section names as users know them; anything else becomes CamelCase + "Arguments".
SECTION_TITLES = {"model": "ModelConfig", "lora": "LoraConfig", "peft": "LoraConfig", "data": "DataArguments"}


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in str(name).replace("-", "_").split("_") if part)


def _value(value: Any) -> str:
    # transformers prints strings bare (output_dir=./results) and containers as Python reprs.
    if isinstance(value, str):
        return value
    return repr(value)


def format_block(title: str, values: dict[str, Any]) -> str:
    lines = [f"{title}("]
    lines += [f"{key}={_value(values[key])}," for key in sorted(values)]
    lines.append(")")
    return "\n".join(lines)


def format_arguments(kind: str, config: dict[str, Any]) -> str:
    """All sections of a run's resolved config; a flat config is one block named after the run kind."""
    config = redact(config)
    kind_title = f"{_camel(kind or 'run')}Arguments"
    sections = config and all(isinstance(v, dict) for v in config.values())
    if not sections:
        return format_block(kind_title, config) + "\n"
    blocks = []
    for name, values in config.items():
        title = kind_title if name in ("train", "training", "args", kind) else SECTION_TITLES.get(name, _camel(name) + "Arguments")
        blocks.append(format_block(title, values))
    return "\n".join(blocks) + "\n"
