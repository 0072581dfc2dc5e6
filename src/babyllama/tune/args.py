"""Fine-tuning arguments: babyllama's few, plus every `TrainingArguments` / `SFTConfig` / `DPOConfig` field.

Each library field is a flag typed exactly as Hugging Face types it, so each flag a user knows from Hugging Face
works unchanged, from the command line or from a YAML file (`--config`); the command line wins.

Defaults we change on purpose, for models of a few million parameters (a user value always wins):
  bf16                    auto: on only where the device computes bf16 natively (TRL: on everywhere, which fails
                          or crawls on most CPUs)
  gradient_checkpointing  off: a baby model's activations fit easily; recomputing them costs ~20% time (TRL: on)
  learning_rate           2e-4 for SFT, 1e-5 for DPO: a tiny model barely moves at TRL's 2e-5 / 1e-6
  output_dir              runs: the folder that holds run folders, as for pretraining
  save_strategy           no: the run's model/ is written at the end; ask for checkpoints with --save_strategy steps
  report_to               none: trackers only when asked
  assistant_only_loss     on (SFT): loss on the assistant's answers and their <|end|>, not on the prompts (TRL: off);
                          --assistant_only_loss false trains every token

One argument system for every command (issue #13 part 6). We keep babyllama's own argparse parsers (strict:
no abbreviations, an unknown flag is an error with a did-you-mean) and generate the sft/dpo flags from the TRL
config dataclasses (SFTConfig / DPOConfig fields) into them, with transformers' own field-to-flag rules
(`HfArgumentParser._parse_dataclass_field`), so every Hugging Face flag parses as users know it. We did not
switch every command to HfArgumentParser because it lacks what ours has: it accepts abbreviations
(`--learn 1e-3` silently means --learning_rate), has no did-you-mean for unknown flags or config keys, and
cannot tell a typed flag from a default (which the --config < flags merge and run records need). The command
line is parsed once and the --config file read once (no second parser, no patched --help).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from babyllama.errors import BabyLlamaError, did_you_mean
from babyllama.export.card import check_license


@dataclass
class TuneArguments:
    """What babyllama adds to the library's configuration: the model, the data, LoRA."""

    model: Optional[str] = field(default=None, metadata={
        "help": "the model to fine-tune: a babyllama run folder (its model/), a checkpoint or a Hugging Face folder"})
    data: Optional[str] = field(default=None, metadata={
        "help": "training data: a .jsonl/.json/.parquet/.txt file, a folder or glob of them, or a Hub dataset name"})
    data_split: str = field(default="train", metadata={"help": "split of a Hub dataset to use"})
    eval_size: float = field(default=0.05, metadata={
        "help": "examples held out for evaluation: a fraction (< 1) or a count (>= 1); 0 holds none out"})
    max_examples: Optional[int] = field(default=None, metadata={"help": "use at most this many examples"})
    system_prompt: Optional[str] = field(default=None, metadata={
        "help": "a system message put before every conversation that has none"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (PEFT) instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={
        "help": "modules that get adapters, e.g. q_proj v_proj; 'all-linear' means every linear layer but lm_head"})
    max_time: Optional[float] = field(default=None, metadata={
        "help": "stop training after this many seconds (the schedule still follows max_steps / epochs)"})
    license: Optional[str] = field(default=None, metadata={
        "help": "license of the fine-tuned weights, a Hub license id (e.g. apache-2.0), written into the model card"})
    drop_truncated: bool = field(default=False, metadata={
        "help": "sft: train without the examples whose answer max_length would cut off (their count is logged)"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "replace an existing run folder of the same name"})


OUR_DEFAULTS = {
    "sft": dict(assistant_only_loss=True, gradient_checkpointing=False, learning_rate=2e-4, output_dir="runs",
                save_strategy="no", report_to="none"),
    "dpo": dict(gradient_checkpointing=False, learning_rate=1e-5, output_dir="runs", save_strategy="no",
                report_to="none"),
    "grpo": dict(gradient_checkpointing=False, learning_rate=1e-5, output_dir="runs", save_strategy="no",
                 report_to="none"),
}


def config_class(kind: str):
    from trl import DPOConfig, GRPOConfig, SFTConfig

    return {"sft": SFTConfig, "dpo": DPOConfig, "grpo": GRPOConfig}[kind]


def default_values(kind: str) -> dict[str, Any]:
    """babyllama's defaults for this command (see the module docstring); a file or a flag overrides them."""
    return {**OUR_DEFAULTS[kind], **device_precision()}


def add_tune_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    """Every TuneArguments and SFTConfig/DPOConfig field as a flag of `parser` (our strict argparse parser: no
    abbreviations, did-you-mean), typed by transformers' own field-to-flag rules (HfArgumentParser's), so each
    library flag parses exactly as with TRL's parser. Defaults are suppressed: only typed flags come back, and
    tune_args_from_namespace applies defaults < --config file < flags in one place."""
    import copy
    import typing

    from transformers import HfArgumentParser

    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="YAML (or JSON) file of options, or a run's manifest.json; command-line flags override it")
    ours = default_values(kind)
    for cls, title in ((TuneArguments, "babyllama"),
                       (config_class(kind), f"{config_class(kind).__name__} (TrainingArguments and TRL)")):
        group = parser.add_argument_group(title)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            f = copy.copy(f)  # transformers rewrites field.type while adding it: leave the class's own field alone
            f.type = hints[f.name]
            before = len(parser._actions)
            HfArgumentParser._parse_dataclass_field(group, f)
            for action in parser._actions[before:]:
                default = ours.get(f.name, action.default)
                if action.help is not None and not action.option_strings[0].startswith("--no_"):
                    action.help = f"{action.help} (default: {getattr(default, 'value', default)})".replace("%", "%%")
                action.default = argparse.SUPPRESS
    known = {a.dest for a in parser._actions}
    for name in [*RENAMED, *LEGACY_FLAGS]:  # old names, translated by tune_args_from_namespace
        if name not in known:
            kind_of = dict(type=float) if name == "warmup_ratio" else dict(nargs="?", const=True) \
                if name in LEGACY_FLAGS or name == "no_cuda" else {}
            parser.add_argument(f"--{name}", default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kind_of)
    # how each flag converts text, for values read from --config (argparse's rule for text defaults)
    parser.set_defaults(_flag_types={a.dest: a.type for a in parser._actions if callable(a.type)})


def _file_value(convert: Optional[Any], value: Any) -> Any:
    """A --config value as argparse would convert a text default of that flag (YAML reads 1e-5 as text)."""
    if convert is not None and isinstance(value, str):
        try:
            return convert(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            return value  # the dataclass's own validation names it
    return value


def tune_args_from_namespace(kind: str, namespace: argparse.Namespace):
    """(TuneArguments, SFTConfig or DPOConfig): babyllama's defaults < the --config file < typed flags."""
    import os

    from babyllama.config import load_config_file

    typed = {k: v for k, v in vars(namespace).items() if not k.startswith("_") and k not in ("command", "config",
                                                                                            "debug")}
    values = default_values(kind)
    config_path = getattr(namespace, "config", None)
    if config_path:
        types = getattr(namespace, "_flag_types", {})
        raw = load_config_file(config_path)  # read once: options and their environment
        for key, value in (raw.get("env") or {}).items():
            os.environ[key] = str(value)
        allowed = field_names(kind)
        file_values = read_yaml_config(raw, config_path, allowed)
        values.update({k: _file_value(types.get(k), v) for k, v in file_values.items()})
    values.update(translate_legacy(typed))
    check_values(argparse.Namespace(**values))
    tune_fields = {f.name for f in dataclasses.fields(TuneArguments) if f.init}
    config_cls = config_class(kind)
    try:
        tune = TuneArguments(**{k: v for k, v in values.items() if k in tune_fields})
        config = config_cls(**{k: v for k, v in values.items() if k not in tune_fields})
    except (ValueError, TypeError) as err:  # the libraries' own validation (__post_init__)
        raise BabyLlamaError(f"invalid {config_cls.__name__}: {err}") from None
    check_tune(tune)
    return tune, config


def field_names(kind: str) -> set[str]:
    return {f.name for cls in (TuneArguments, config_class(kind)) for f in dataclasses.fields(cls) if f.init}


def parse_tune_args(kind: str, argv: list[str]):
    """(TuneArguments, SFTConfig or DPOConfig) from argv alone: the `babyllama sft/dpo` parser on its own
    (for tests and scripts); argv is parsed once."""
    parser = argparse.ArgumentParser(prog=f"babyllama {kind}", allow_abbrev=False)
    add_tune_arguments(parser, kind)
    return tune_args_from_namespace(kind, parser.parse_args(argv))


def device_precision() -> dict[str, bool]:
    """bf16 where the device computes it natively (CUDA 8.0+, CPUs with AVX512-BF16/AMX), fp16 with loss scaling
    on 7.x cards (T4, V100: `is_bf16_supported()` says True there, but bf16 is only emulated), else fp32."""
    import torch

    from babyllama.train.device import cpu_has_native_bf16, device_family

    if torch.cuda.is_available():
        family = device_family(torch.device("cuda"))
        return {"bf16": family == "cuda-bf16", "fp16": family == "cuda-fp16"}
    return {"bf16": cpu_has_native_bf16(), "fp16": False}


def read_yaml_config(values: dict[str, Any], path: str, allowed: set[str]) -> dict[str, Any]:
    """The options of a --config file (already read), old names translated, each checked against `allowed`."""
    values = translate_legacy({k: v for k, v in values.items() if k != "env"})  # env: applied by the caller
    from babyllama.records.redact import is_secret_key

    # A manifest read back holds placeholders (<HUB_TOKEN>) where secrets were: those are not values.
    values = {k: v for k, v in values.items()
              if not (is_secret_key(k) and isinstance(v, str) and v.startswith("<") and v.endswith(">"))}
    for key in values:
        if key not in allowed:
            raise BabyLlamaError(f"unknown option '{key}' in config file {path}{did_you_mean(key, allowed)}")
    return values


# TrainingArguments fields that transformers 5 renamed; the original records (transformers 4) use the old names.
# warmup_ratio r became warmup_steps r (a float below 1 is a ratio of the total steps).
RENAMED = {"evaluation_strategy": "eval_strategy", "no_cuda": "use_cpu", "warmup_ratio": "warmup_steps"}
LEGACY_FLAGS = {"group_by_length": ("train_sampling_strategy", "group_by_length", "random")}


def translate_legacy(values: dict[str, Any], log=print) -> dict[str, Any]:
    """Old TrainingArguments names -> today's, with a note (group_by_length -> train_sampling_strategy)."""
    out = {}
    if "warmup_ratio" in values and not values.get("warmup_steps"):
        values = {k: v for k, v in values.items() if k != "warmup_steps"}  # 0 steps: the ratio decides
    for key, value in values.items():
        if key in RENAMED:
            log(f"note: {key} is called {RENAMED[key]} in transformers 5; using it")
            out[RENAMED[key]] = value
        elif key in LEGACY_FLAGS:
            new, on, off = LEGACY_FLAGS[key]
            on_value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
            log(f"note: {key}={value} is {new}={on if on_value else off} in transformers 5; using it")
            out[new] = on if on_value else off
        else:
            out[key] = value
    return out


def check_values(values) -> None:
    """Values that parse but cannot run on this machine: say which field, and what to use instead."""
    import torch

    cuda = torch.cuda.is_available()
    optim = str(getattr(values, "optim", "") or "")
    if ("paged" in optim or "8bit" in optim or "bnb" in optim) and not cuda:
        raise BabyLlamaError(f"optim={optim} uses bitsandbytes' paged/8-bit optimizer, which needs a CUDA GPU; "
                             f"on this machine use --optim adamw_torch (or adamw_torch_fused)")
    if getattr(values, "bf16", False) and not cuda and not getattr(values, "use_cpu", False) \
            and not device_precision()["bf16"]:
        raise BabyLlamaError("bf16=true, but this CPU has no native bf16 (no AVX512-BF16/AMX): use --bf16 false "
                             "(fp32), or --use_cpu true to emulate bf16 slowly")
    if getattr(values, "fp16", False) and not cuda:
        raise BabyLlamaError("fp16=true needs a CUDA GPU (loss scaling); on CPU use --fp16 false (fp32)")
    if getattr(values, "bf16", False) and getattr(values, "fp16", False):
        raise BabyLlamaError("bf16 and fp16 are both on; pick one")


def check_tune(tune: TuneArguments) -> None:
    if not tune.model:
        raise BabyLlamaError("--model is required: a run folder, checkpoint or Hugging Face model folder")
    if not tune.data:
        raise BabyLlamaError("--data is required: a JSONL/JSON/Parquet/text file or a Hub dataset name")
    if tune.eval_size < 0:
        raise BabyLlamaError(f"--eval_size must be >= 0, got {tune.eval_size}")
    if tune.lora and (tune.lora_r <= 0 or tune.lora_alpha <= 0 or not 0 <= tune.lora_dropout < 1):
        raise BabyLlamaError("--lora_r and --lora_alpha must be positive and --lora_dropout in [0, 1)")
    if tune.max_time is not None and tune.max_time <= 0:
        raise BabyLlamaError("--max_time must be positive (seconds)")
    if tune.max_examples is not None and tune.max_examples <= 0:
        raise BabyLlamaError("--max_examples must be positive")
    if tune.license is not None:
        tune.license = check_license(tune.license)


def resolved_dict(config) -> dict[str, Any]:
    """The fully resolved arguments as JSON-safe values (enums by value), secrets replaced by placeholders."""
    import json

    from babyllama.records.redact import redact

    raw = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return redact(json.loads(json.dumps(raw, default=lambda v: getattr(v, "value", str(v)))))
