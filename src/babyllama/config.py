"""Configuration as data: dataclasses, presets, YAML files and command-line overrides.

Resolution order, later wins: dataclass defaults < preset/device recipe < YAML (--config) < command line.
Training options use Hugging Face `TrainingArguments` names where the two overlap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from babyllama.errors import BabyLlamaError, did_you_mean


def opt(default, help: str, **meta):
    """A dataclass field with its --help text attached, and optionally `choices` and `resumable=True` (the option
    may change when a run is resumed: anything else would break "continue as if it had never stopped")."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


# --------------------------------------------------------------------------- model


@dataclass
class ModelConfig:
    dim: int = opt(288, "model width (hidden size)")
    n_layers: int = opt(6, "number of transformer blocks")
    n_heads: int = opt(6, "number of query heads")
    n_kv_heads: Optional[int] = opt(None, "number of key/value heads (grouped-query attention); default n_heads")
    vocab_size: int = opt(0, "vocabulary size; 0 takes it from the tokenizer")
    hidden_dim: Optional[int] = opt(None, "SwiGLU hidden size; default 2/3 of 4*dim rounded up to multiple_of")
    multiple_of: int = opt(32, "round hidden_dim up to a multiple of this")
    max_seq_len: int = opt(256, "context length (positions the model is built for)")
    norm_eps: float = opt(1e-5, "RMSNorm epsilon")
    rope_theta: float = opt(10000.0, "rotary embedding base")
    dropout: float = opt(0.0, "dropout on attention weights and residual branches")
    tie_embeddings: bool = opt(True, "share the input embedding and the output classifier")

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.hidden_dim is None:
            if not isinstance(self.multiple_of, int) or self.multiple_of <= 0:
                raise BabyLlamaError(f"model field 'multiple_of' must be positive, got {self.multiple_of}")
            hidden = int(2 * (4 * self.dim) / 3)
            self.hidden_dim = self.multiple_of * math.ceil(hidden / self.multiple_of)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def validate(self) -> None:
        positive = ["dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "max_seq_len", "vocab_size"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise BabyLlamaError(f"model field '{name}' must be positive, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise BabyLlamaError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise BabyLlamaError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise BabyLlamaError(f"head_dim = dim / n_heads = {self.head_dim} must be even for rotary embeddings")
        if not 0.0 <= self.dropout < 1.0:
            raise BabyLlamaError(f"dropout must be in [0, 1), got {self.dropout}")


# llama2.c's published shapes; the vocabulary comes from the tokenizer.
PRESETS: dict[str, dict[str, Any]] = {
    "260k": dict(dim=64, n_layers=5, n_heads=8, n_kv_heads=4, max_seq_len=512),
    "15m": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, max_seq_len=256),
    "42m": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=8, max_seq_len=1024),
    "110m": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, max_seq_len=1024),
}


def preset_model(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise BabyLlamaError(f"unknown preset '{name}'{did_you_mean(name, PRESETS)}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


# --------------------------------------------------------------------------- pretraining


SCHEDULES = ("cosine", "linear", "constant", "constant_with_warmup", "warmup_stable_decay")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "trackio")


@dataclass
class TrainConfig:
    data: Optional[str] = opt(None, "prepared data folder (from `babyllama prepare`), or a mixture of folders that "
                                    "share one tokenizer: 'a:0.7 b:0.3' or a YAML file listing {path, weight}",
                              resumable=True)
    preset: str = opt("260k", "model preset", choices=tuple(PRESETS))
    init_from: Optional[str] = opt(None, "start from this Hugging Face Llama folder or run instead of random weights")
    output_dir: str = opt("runs", "folder that holds run folders")
    run_name: Optional[str] = opt(None, "name of the run folder; default run<timestamp>")
    overwrite_output_dir: bool = opt(False, "replace an existing run folder of the same name")
    resume_from_checkpoint: Optional[str] = opt(None, "run folder or checkpoint folder to continue exactly", resumable=True)
    max_steps: int = opt(-1, "optimizer steps to train (-1: train for --max_time, else for --num_train_epochs)", resumable=True)
    max_time: Optional[float] = opt(None, "wall-clock budget in seconds; the schedule is fitted to it", resumable=True)
    num_train_epochs: float = opt(1.0, "epochs over the training split when neither max_steps nor max_time is set")
    per_device_train_batch_size: Optional[int] = opt(None, "sequences per micro-batch per device (default: recipe)")
    per_device_eval_batch_size: Optional[int] = opt(None, "sequences per evaluation batch (default: train batch)", resumable=True)
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimizer step")
    seq_len: Optional[int] = opt(None, "training sequence length (default: recipe, at most max_seq_len)")
    seq_len_warmup_ratio: float = opt(0.0, "share of the run (of the budget under --max_time) over which the "
                                           "training context grows from a quarter of --seq_len to all of it, "
                                           "doubling halfway; each step keeps its tokens (0: off)")
    learning_rate: Optional[float] = opt(None, "peak learning rate (default: recipe)")
    min_lr_ratio: float = opt(0.1, "final learning rate as a fraction of the peak (cosine, linear, "
                                   "warmup_stable_decay)")
    lr_decay_ratio: float = opt(0.2, "warmup_stable_decay: the share of the run, at its end, over which the rate "
                                     "falls linearly from the peak to the floor")
    lr_scheduler_type: str = opt("cosine", "learning-rate schedule after warmup", choices=SCHEDULES)
    warmup_steps: int = opt(0, "linear warmup steps (overrides warmup_ratio when > 0)")
    warmup_ratio: Optional[float] = opt(None, "warmup as a fraction of the total steps (default: recipe)")
    init_std: float = opt(0.02, "standard deviation of the random initial weights (the residual output projections "
                                "are scaled down by depth)")
    z_loss: Optional[float] = opt(None, "PaLM's auxiliary loss z * log(Z)^2 per token, which holds the softmax "
                                        "normaliser Z near 1 (0: off; default: recipe, 1e-4 for 260k on CPU, else 0); "
                                        "only its gradient is added, so the logged loss stays the cross-entropy")
    weight_decay: float = opt(0.1, "AdamW weight decay (never applied to norms and biases)")
    adam_beta1: float = opt(0.9, "AdamW beta1")
    adam_beta2: float = opt(0.95, "AdamW beta2")
    adam_epsilon: float = opt(1e-8, "AdamW epsilon")
    optim: str = opt("adamw", "optimizer: adamw, or muon (Muon for the blocks' weight matrices, AdamW for "
                              "embeddings, head and norms)", choices=("adamw", "muon"))
    muon_learning_rate: Optional[float] = opt(None, "Muon's peak learning rate (default: --learning_rate); "
                                                    "follows the same schedule")
    muon_weight_decay: float = opt(0.1, "Muon's weight decay")
    muon_momentum: float = opt(0.95, "Muon's momentum (Nesterov)")
    max_grad_norm: float = opt(1.0, "clip gradients to this global norm (0 disables)")
    max_consecutive_nonfinite: int = opt(10, "stop after this many optimizer steps in a row with a NaN/Inf loss or "
                                             "gradient (each one is skipped and counted; checked when logging or "
                                             "saving)", resumable=True)
    stop_timeout: float = opt(60.0, "after SIGTERM/Ctrl-C, seconds allowed to finish the step and checkpoint; "
                                    "past it the process exits at once (the previous checkpoint stays valid)", resumable=True)
    seed: int = opt(42, "seed for weights, data order and dropout")
    device: str = opt("auto", "cpu, cuda, cuda:N or auto", resumable=True)
    bf16: Optional[bool] = opt(None, "bf16 autocast (default: on where the device computes bf16 natively)")
    fp16: bool = opt(False, "fp16 autocast with loss scaling (CUDA)")
    fsdp: bool = opt(False, "under torchrun: shard weights, gradients and optimizer state across processes "
                            "(FSDP2, torch fully_shard) instead of replicating them (DDP)", resumable=True)
    torch_compile: Optional[bool] = opt(None, "compile the model with torch.compile (default: recipe)")
    loss_impl: str = opt("auto", "how the loss is computed: standard (full logits), chunked (no full-batch fp32 "
                                 "logits), liger (Liger Kernel) or cce (cut-cross-entropy), both CUDA and run "
                                 "outside the compiled graph, falling back to chunked; fused (liger, else cce, else "
                                 "chunked) or auto", choices=("auto", "standard", "chunked", "liger", "cce", "fused"),
                         resumable=True)
    gradient_checkpointing: Optional[bool] = opt(None, "recompute each block's activations in the backward pass "
                                                       "instead of keeping them: less memory, about 1/3 more compute "
                                                       "(default: recipe, off unless memory is short)", resumable=True)
    logging_steps: int = opt(10, "log every N optimizer steps", resumable=True)
    eval_steps: Optional[int] = opt(None, "evaluate every N steps (default: about 10 evaluations per run; under "
                                          "--max_time they take at most a twentieth of the budget)", resumable=True)
    save_steps: Optional[int] = opt(None, "checkpoint every N steps (default: at every evaluation)", resumable=True)
    save_total_limit: Optional[int] = opt(2, "keep at most this many checkpoints (none keeps all)", resumable=True)
    eval_max_tokens: Optional[int] = opt(None, "cap on validation tokens per evaluation (default: the whole split)", resumable=True)
    num_samples: int = opt(2, "stories sampled into samples.md at each evaluation", resumable=True)
    sample_max_new_tokens: int = opt(160, "length of those samples", resumable=True)
    report_to: list = opt(["none"], "trackers: none, tensorboard, wandb, mlflow, trackio (several allowed)", resumable=True)
    disable_tqdm: bool = opt(False, "no progress bar", resumable=True)
    license: Optional[str] = opt(None, "license of the trained weights, a Hub license id (e.g. apache-2.0, mit); "
                                       "written into the model card", resumable=True)


    def validate(self) -> None:
        """Every rule an option must meet, on a new run and a resumed one alike (after the recipe filled in the
        defaults); errors name the option and the values it takes."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "choices" in f.metadata and value not in f.metadata["choices"] and f.name != "preset":  # preset_model
                raise BabyLlamaError(f"--{f.name} '{value}' is not one of {', '.join(f.metadata['choices'])}"
                                     f"{did_you_mean(str(value), f.metadata['choices'])}")
        positive = ["per_device_train_batch_size", "seq_len", "gradient_accumulation_steps", "learning_rate",
                    "logging_steps", "num_train_epochs", "max_consecutive_nonfinite", "stop_timeout",
                    "sample_max_new_tokens", "init_std"]
        optional = ["eval_steps", "save_steps", "max_time", "per_device_eval_batch_size", "eval_max_tokens",
                    "save_total_limit", "muon_learning_rate"]
        for name in positive + [n for n in optional if getattr(self, n) is not None]:
            value = getattr(self, name)
            if value is None or isinstance(value, bool) or not value > 0 or math.isinf(value):  # `not >`: NaN too
                raise BabyLlamaError(f"--{name} must be a positive finite number, got {value}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise BabyLlamaError(f"--max_steps must be a positive number of steps, or -1 to train for --max_time "
                                 f"(else --num_train_epochs), got {self.max_steps}")
        if self.num_samples < 0:
            raise BabyLlamaError(f"--num_samples must be 0 or more, got {self.num_samples}")
        if self.warmup_steps < 0 or (self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1):
            raise BabyLlamaError("--warmup_steps must be >= 0 and --warmup_ratio in [0, 1)")
        if self.z_loss is not None and not 0 <= self.z_loss < math.inf:  # `not <=`: NaN too (None: the recipe's)
            raise BabyLlamaError(f"--z_loss must be 0 (off) or a positive finite number (1e-4 is PaLM's), "
                                 f"got {self.z_loss}")
        if not 0 <= self.seq_len_warmup_ratio <= 1:
            raise BabyLlamaError(f"--seq_len_warmup_ratio must be in [0, 1], got {self.seq_len_warmup_ratio}")
        if self.seq_len_warmup_ratio and self.seq_len % 4:
            raise BabyLlamaError(f"--seq_len_warmup_ratio needs a --seq_len divisible by 4 (it trains at a quarter "
                                 f"and a half of it first), got --seq_len {self.seq_len}")
        if not self.weight_decay >= 0 or not self.max_grad_norm >= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise BabyLlamaError("--weight_decay and --max_grad_norm must be >= 0, --min_lr_ratio in [0, 1]")
        if not 0 < self.lr_decay_ratio <= 1:
            raise BabyLlamaError(f"--lr_decay_ratio must be in (0, 1], got {self.lr_decay_ratio}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise BabyLlamaError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.adam_epsilon > 0:
            raise BabyLlamaError(f"--adam_epsilon must be positive, got {self.adam_epsilon}")
        if not self.muon_weight_decay >= 0 or not 0 <= self.muon_momentum < 1:
            raise BabyLlamaError(f"--muon_weight_decay must be >= 0 and --muon_momentum in [0, 1), got "
                                 f"{self.muon_weight_decay} and {self.muon_momentum}")
        if self.optim == "muon" and self.fsdp:
            raise BabyLlamaError("--optim muon does not work with --fsdp: Muon orthogonalises whole weight "
                                 "matrices, which FSDP shards across processes. Use DDP (leave --fsdp off) or "
                                 "--optim adamw")
        for tracker in self.report_to:
            if tracker not in TRACKERS and tracker != "all":
                raise BabyLlamaError(f"--report_to '{tracker}' is not a tracker{did_you_mean(tracker, TRACKERS)}; "
                                     f"choose from {', '.join(TRACKERS)}, all")


def resumable_options(cls=None) -> set[str]:
    """The options declared resumable=True: those a resumed run may change."""
    return {f.name for f in dataclasses.fields(cls or TrainConfig) if f.metadata.get("resumable")}


# --------------------------------------------------------------------------- argparse from dataclasses


def _base_type(annotation):
    """(python type, is_optional) of a field annotation, resolving string annotations."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {**typing.__dict__, **globals()})  # annotations are our own, trusted
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])[0], True
    if origin is list:
        return list, False
    return annotation, False


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def _typed(kind, optional: bool):
    def convert(text: str):
        if optional and str(text).lower() in ("none", "null"):
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got '{text}'") from None

    convert.__name__ = kind.__name__
    return convert


def add_dataclass_args(parser: argparse.ArgumentParser, cls, title: str, skip: tuple = ()) -> None:
    """One --flag per dataclass field, defaults suppressed so only explicit flags come back."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, optional = _base_type(f.type)
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict[str, Any] = dict(default=argparse.SUPPRESS, help=f"{help_text} (default: {default})")
        if kind is bool:
            kwargs.update(nargs="?", const=True, type=parse_bool, metavar="BOOL")
        elif kind is list:
            kwargs.update(nargs="+", metavar="VALUE")
        else:
            kwargs.update(type=_typed(kind, optional))
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
                kwargs["metavar"] = "{" + ",".join(f.metadata["choices"]) + "}"
        group.add_argument(f"--{f.name}", **kwargs)


def field_names(*classes) -> set[str]:
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config; a run manifest (`manifest.json`) yields the config it recorded."""
    path = Path(path)
    if not path.is_file():
        raise BabyLlamaError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BabyLlamaError(f"cannot parse config file {path}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BabyLlamaError(f"config file {path} must hold a mapping of option: value, not {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise BabyLlamaError(f"config file {path}: option names must be text, got {key!r}")
    if "config" in data and isinstance(data["config"], dict) and "babyllama_version" in data:
        data = flatten_manifest_config(data["config"])  # reproduce a run from its record
    return data


def flatten_manifest_config(config: dict) -> dict:
    """A manifest stores {'train': {...}, 'model': {...}}; a config file is flat."""
    flat = dict(config.get("train", {}))
    flat.update(config.get("model", {}))
    for key in ("resume_from_checkpoint", "run_name", "overwrite_output_dir"):
        flat.pop(key, None)
    return flat


def check_keys(values: dict, allowed: set[str], where: str) -> None:
    for key in values:
        if key not in allowed:
            raise BabyLlamaError(f"unknown option '{key}' in {where}{did_you_mean(key, allowed)}")


def coerce(cls, values: dict, where: str) -> dict:
    """Convert YAML values to the field types of cls, with errors naming the field."""
    kinds = {f.name: _base_type(f.type) for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in kinds:
            continue
        kind, optional = kinds[key]
        if value is None:
            if not optional:
                raise BabyLlamaError(f"option '{key}' in {where} cannot be null")
            out[key] = None
            continue
        try:
            if kind is bool:
                out[key] = value if isinstance(value, bool) else parse_bool(value)
            elif kind is list:
                out[key] = list(value) if isinstance(value, (list, tuple)) else [value]
            elif kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                out[key] = float(value)
            elif kind is int and (isinstance(value, int) and not isinstance(value, bool) or
                                  isinstance(value, float) and value.is_integer()):
                out[key] = int(value)
            elif kind is int and isinstance(value, str):
                out[key] = int(value)
            elif kind is str and isinstance(value, (str, int, float)):
                out[key] = str(value)
            else:
                raise ValueError
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            raise BabyLlamaError(f"option '{key}' in {where} must be {kind.__name__}, got {value!r}") from None
    return out


def to_dict(obj) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
