"""Planning a pretraining run: everything resolved and checked before anything is written or trained.

A new run: the config (recipe defaults for the device filled in), the data, the model shape (a preset, options,
or the --init_from model's). A resumed run: the saved config with the options declared resumable=True changed,
the same tokenizer in the data, the global batch kept on any number of processes. Both paths end in the same
validation.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from babyllama.config import ModelConfig, TrainConfig, preset_model, resumable_options
from babyllama.data.training_data import TrainingData
from babyllama.export.card import check_license
from babyllama.data.tokenizer import load_tokenizer
from babyllama.errors import BabyLlamaError
from babyllama.layout import RunFolder, resolve_checkpoint
from babyllama.modelio import load_model
from babyllama.records.lock import check_free
from babyllama.records.run import check_run_name, default_run_name
from babyllama.train.device import Precision, choose_precision, resolve_device
from babyllama.train.distributed import env_world_size
from babyllama.train.global_batch import fit_global_batch
from babyllama.train.recipes import BEFORE_THE_OPTION, recipe_for


@dataclass
class Plan:
    """Everything resolved before the first step."""

    train: TrainConfig
    model: ModelConfig
    device: torch.device
    precision: Precision
    run_dir: Path
    data: TrainingData
    resume_from: Optional[Path] = None
    state: dict = field(default_factory=dict)  # trainer state of the checkpoint we resume from
    init_weights: Optional[dict] = None  # the --init_from model's weights (loaded once, here)
    notes: list = field(default_factory=list)  # what a resume changed (e.g. the number of processes), said at start


def _model_config(cfg: TrainConfig, model_values: dict, vocab_size: int) -> ModelConfig:
    values = preset_model(cfg.preset)
    values.update(model_values)
    if values.get("vocab_size", 0) in (0, None):
        values["vocab_size"] = vocab_size
    elif values["vocab_size"] < vocab_size:
        raise BabyLlamaError(f"--vocab_size {values['vocab_size']} is smaller than the tokenizer's {vocab_size} tokens")
    return ModelConfig(**values)


def _check(cfg: TrainConfig, model: ModelConfig, data: TrainingData) -> None:
    """The checks a new and a resumed run share."""
    cfg.validate()
    model.validate()
    if cfg.license is not None:
        cfg.license = check_license(cfg.license)
    if data.tokenizer.vocab_size > model.vocab_size:
        raise BabyLlamaError(f"the data's tokenizer has {data.tokenizer.vocab_size} tokens but the model's "
                             f"vocabulary is {model.vocab_size}")
    if cfg.seq_len > model.max_seq_len:
        raise BabyLlamaError(f"--seq_len {cfg.seq_len} is beyond the model's context (max_seq_len "
                             f"{model.max_seq_len}); lower --seq_len or raise --max_seq_len")


def _run_tokenizer_hash(run_dir: Path) -> Optional[str]:
    try:
        return json.loads(RunFolder(run_dir).manifest.read_text())["tokenizer"]["hash"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    folder = RunFolder(run_dir).tokenizer
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder).hash
    return None


def plan_resume(train_values: dict[str, Any], model_values: dict[str, Any]) -> Plan:
    given = Path(train_values["resume_from_checkpoint"])
    if given.is_dir() and not (given / "trainer_state.json").is_file():
        check_free(given)  # a run folder that a live process trains: say so, whatever its checkpoints
    checkpoint = resolve_checkpoint(given)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    saved_train, saved_model = state["config"]["train"], state["config"]["model"]
    # Options newer than the checkpoint take the value that reproduces how it was trained (the recipe may differ).
    saved_train = {**BEFORE_THE_OPTION, **saved_train}
    for key, value in model_values.items():
        if saved_model.get(key) != value:
            raise BabyLlamaError(f"cannot resume with a changed model shape: {key} was {saved_model.get(key)}, "
                                 f"now {value}. Start a new run (or --init_from {checkpoint}) instead")
    # Another number of processes is fine while the global batch stays (accumulation adapts; global_batch.py).
    batch_values, batch_note = fit_global_batch(saved_train, train_values, state.get("world_size", 1),
                                                env_world_size())
    train_values = {**train_values, **batch_values}
    changed = {k for k, v in train_values.items() if saved_train.get(k) != v} - resumable_options() - set(batch_values)
    if changed:
        raise BabyLlamaError(f"cannot change {', '.join(sorted(changed))} when resuming: the run would not "
                             f"continue as if it had not stopped. Start a new run with --init_from {checkpoint}")
    cfg = TrainConfig(**{**saved_train, **train_values})
    model = ModelConfig(**saved_model)
    run_dir = checkpoint.parent.parent
    cfg.validate()  # a bad option is the first thing to hear about, on a resume as on a new run
    check_free(run_dir)  # another process trains this run: say so now, before anything is loaded
    data = TrainingData(cfg.data)
    trained_with = _run_tokenizer_hash(run_dir)
    if trained_with and trained_with != data.tokenizer.hash:
        raise BabyLlamaError(f"--data {cfg.data} was made with a different tokenizer than the run {run_dir} "
                             f"(tokenizer hash {data.tokenizer.hash[:12]}, the run's {trained_with[:12]}): its token "
                             f"ids mean other words. Resume with the data the run trained on, or prepare this corpus "
                             f"with the run's tokenizer (babyllama prepare ... --tokenizer {run_dir / 'tokenizer'})")
    _check(cfg, model, data)
    device = resolve_device(cfg.device)
    return Plan(cfg, model, device, choose_precision(device, cfg.bf16, cfg.fp16), run_dir, data, checkpoint, state,
                notes=[batch_note] if batch_note else [])


def plan_new(train_values: dict[str, Any], model_values: dict[str, Any]) -> Plan:
    cfg = TrainConfig(**train_values)
    if not cfg.data:
        raise BabyLlamaError("--data is required: a folder made by `babyllama prepare` (e.g. --data data/ts-512)")
    device = resolve_device(cfg.device)
    recipe = recipe_for(cfg.preset, device.type)
    # --optim is not None by default (adamw): the recipe's optimizer unless --optim was given; never Muon under
    # FSDP, which shards the matrices Muon needs whole.
    if "optim" in recipe and "optim" not in train_values and not cfg.fsdp:
        cfg.optim = recipe["optim"]
    # A Muon recipe's learning_rate is for its AdamW part (embeddings, head, norms); AdamW training every weight
    # may want another one.
    adamw_alone = recipe.pop("adamw_alone_learning_rate", None)
    if cfg.optim == "adamw" and adamw_alone is not None:
        recipe["learning_rate"] = adamw_alone
    for key, value in {**BEFORE_THE_OPTION, **recipe}.items():  # a recipe that does not set them trains without
        if key != "optim" and getattr(cfg, key) is None:
            setattr(cfg, key, value)
    if cfg.warmup_ratio is None:
        cfg.warmup_ratio = 0.0
    cfg.validate()  # before the data and model are read: a bad option is the first thing to hear about
    cfg.run_name = check_run_name(cfg.run_name or default_run_name())  # before anything is written
    data = TrainingData(cfg.data)
    init_weights = None
    if cfg.init_from:
        source, tokenizer, _ = load_model(cfg.init_from, need_tokenizer=False)
        if tokenizer is not None and tokenizer.hash != data.tokenizer.hash:
            raise BabyLlamaError(f"--init_from {cfg.init_from} uses a different tokenizer than --data {cfg.data}; "
                                 f"prepare the data with --tokenizer {cfg.init_from}")
        model = dataclasses.replace(source.config, **model_values)
        init_weights = source.state_dict()
    else:
        model = _model_config(cfg, model_values, data.tokenizer.vocab_size)
    _check(cfg, model, data)
    precision = choose_precision(device, cfg.bf16, cfg.fp16)
    cfg.bf16 = precision.dtype == torch.bfloat16
    cfg.fp16 = precision.dtype == torch.float16  # 7.x GPUs default to fp16; a resumed run must keep it
    return Plan(cfg, model, device, precision, Path(cfg.output_dir) / cfg.run_name, data, init_weights=init_weights)


def plan_run(train_values: dict[str, Any], model_values: dict[str, Any]) -> Plan:
    if train_values.get("resume_from_checkpoint"):
        return plan_resume(train_values, model_values)
    return plan_new(train_values, model_values)
