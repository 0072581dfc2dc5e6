"""Resumable checkpoints, written atomically and verified on load.

    checkpoints/step_000500/
        config.json, model.safetensors   the model in Hugging Face layout (loadable on its own)
        optimizer.pt                     AdamW state (tensors only: loaded with weights_only=True)
        rng.pt                           every RNG state the step consumed (CPU, CUDA)
        trainer_state.json               step, tokens seen, elapsed time, schedule, counters
        checkpoint.json                  format version, size and sha256 of each file above; written last

A checkpoint is written into a hidden temporary folder, flushed, and renamed into place, so a crash leaves
either the previous complete checkpoint or the new one, never half of one. A checkpoint whose weights or optimizer
state hold NaN/Inf is never written. Old checkpoints are pruned by renaming them away before deleting them.
Where checkpoints live and how they are verified is babyllama.layout's business (re-exported here).
Loading uses safetensors and torch.load(weights_only=True) only: a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from babyllama.config import ModelConfig
from babyllama.errors import BabyLlamaError
from babyllama.layout import (CHECKPOINT_FORMAT, CHECKPOINT_INDEX, checkpoint_name, latest_checkpoint,  # noqa: F401
                              list_checkpoints, resolve_checkpoint, safe_torch_load, sha256, verify_checkpoint)
from babyllama.modelio import load_model, save_weights
from babyllama.train import faults

INDEX = CHECKPOINT_INDEX
# Where checkpoints live and how they are verified is babyllama.layout's; these names stay importable from here.
__all__ = ["checkpoint_name", "latest_checkpoint", "list_checkpoints", "resolve_checkpoint", "verify_checkpoint",
           "safe_torch_load", "save_checkpoint", "load_weights", "load_training_state", "prune_checkpoints",
           "nonfinite_tensor"]


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def nonfinite_tensor(model_state: dict, optimizer_state: Optional[dict] = None) -> Optional[str]:
    """The name of the first weight (or optimizer state) holding NaN or Inf, else None."""
    named = [(name, t) for name, t in model_state.items() if torch.is_tensor(t) and t.is_floating_point()]
    if optimizer_state is not None:
        for index, state in optimizer_state.get("state", {}).items():
            named += [(f"optimizer state {key} of parameter #{index}", value) for key, value in state.items()
                      if torch.is_tensor(value) and value.is_floating_point()]
    if not named:
        return None
    # One reduction and one device sync for all tensors; names are looked up only on failure.
    if bool(torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named]).all()):
        return None
    return next(name for name, t in named if not bool(torch.isfinite(t).all()))


def _remove_leftovers(root: Path) -> None:
    """Staging and trash folders left by a process killed in the middle of a save or prune."""
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in root.glob(".trash-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def save_checkpoint(run_dir: Path, step: int, *, model_config: ModelConfig, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict, trainer_state: dict[str, Any], rng_state: dict[str, Any]) -> Path:
    """Write checkpoints/step_N from state dicts (whole tensors, as one process holds them), atomically."""
    root = Path(run_dir) / "checkpoints"
    final = root / checkpoint_name(step)
    bad = nonfinite_tensor(model_state, optimizer_state)
    if bad:
        previous = latest_checkpoint(run_dir, warn=lambda _: None)
        raise BabyLlamaError(f"refusing to write checkpoint {final.name}: {bad} holds NaN or Inf values. "
                             f"Nothing was written; the last good checkpoint is "
                             f"{previous if previous else '(none)'}. Resume from it with a lower --learning_rate "
                             f"or --max_grad_norm")
    staging = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root)
        save_weights(model_config, model_state, staging)
        faults.point("checkpoint.weights")
        torch.save(optimizer_state, staging / "optimizer.pt")
        faults.point("checkpoint.optimizer")
        torch.save(rng_state, staging / "rng.pt")
        (staging / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        files = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256(path)}
        faults.point("checkpoint.index")
        (staging / INDEX).write_text(json.dumps({"format": CHECKPOINT_FORMAT, "step": step, "files": files},
                                                indent=2))
        _fsync_file(staging / INDEX)
        _fsync_dir(staging)
        faults.point("checkpoint.rename")
        trash = root / f".trash-{final.name}-{os.getpid()}"
        if final.exists():  # re-saving a step (resumed from an older checkpoint): swap, never delete first
            os.replace(final, trash)
        os.replace(staging, final)
        faults.point("checkpoint.renamed")
        _fsync_dir(root)
        shutil.rmtree(trash, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        previous = latest_checkpoint(run_dir, warn=lambda _: None)
        raise BabyLlamaError(f"could not write checkpoint {final}: {err.strerror or err}. The previous checkpoint "
                             f"{'(' + previous.name + ') ' if previous else ''}is intact; free disk space and resume "
                             f"with --resume_from_checkpoint {run_dir}") from None
    except BaseException:  # e.g. a second Ctrl-C in the middle of the save
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's model weights as our model's state dict (verified against the checkpoint's index)."""
    return load_model(folder, need_tokenizer=False)[0].state_dict()


def load_training_state(folder: Path) -> tuple[dict, dict, dict]:
    """(trainer_state, optimizer state dict, rng state), loaded without unpickling arbitrary objects."""
    trainer_state = json.loads((folder / "trainer_state.json").read_text())
    return trainer_state, safe_torch_load(folder / "optimizer.pt"), safe_torch_load(folder / "rng.pt")


def prune_checkpoints(run_dir: Path, keep: Optional[int]) -> None:
    if keep is None or keep <= 0:
        return
    for old in list_checkpoints(run_dir)[:-keep]:
        # Rename first, so a kill during the deletion never leaves a half-deleted step_ folder behind.
        trash = old.with_name(f".trash-{old.name}-{os.getpid()}")
        os.replace(old, trash)
        faults.point("checkpoint.prune")
        shutil.rmtree(trash, ignore_errors=True)
