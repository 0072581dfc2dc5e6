"""Resumable checkpoints, written atomically and verified on load.

    checkpoints/step_000500/
        config.json, model.safetensors   the model in Hugging Face layout (loadable on its own)
        optimizer.pt                     AdamW state (tensors only: loaded with weights_only=True)
        rng.pt                           every RNG state the step consumed (CPU, CUDA)
        trainer_state.json               step, tokens seen, elapsed time, schedule, counters
        checkpoint.json                  size and sha256 of each file above; written last

A checkpoint is written into a hidden temporary folder, flushed, and renamed into place, so a crash leaves
either the previous complete checkpoint or the new one, never half of one. A checkpoint whose weights or optimizer
state hold NaN/Inf is never written. Old checkpoints are pruned by renaming them away before deleting them.
Loading uses safetensors and torch.load(weights_only=True) only: a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from babyllama.errors import BabyLlamaError
from babyllama.train import faults

PREFIX = "step_"
INDEX = "checkpoint.json"
REQUIRED = {"config.json", "model.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


def nonfinite_tensor(model, optimizer=None) -> Optional[str]:
    """The name of the first parameter (or optimizer state) holding NaN or Inf, else None."""
    named = list(model.named_parameters())
    if optimizer is not None:
        for index, state in enumerate(optimizer.state.values()):
            named += [(f"optimizer state {key} of parameter #{index}", value) for key, value in state.items()
                      if torch.is_tensor(value) and value.is_floating_point()]
    # One reduction and one device sync for all tensors; names are looked up only on failure.
    if bool(torch.stack([torch.isfinite(t).all() for _, t in named]).all()):
        return None
    return next(name for name, t in named if not bool(torch.isfinite(t).all()))


def _remove_leftovers(root: Path) -> None:
    """Staging and trash folders left by a process killed in the middle of a save or prune."""
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in root.glob(".trash-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def save_checkpoint(run_dir: Path, step: int, model, optimizer, trainer_state: dict[str, Any],
                    rng_state: dict[str, Any], tokenizer=None) -> Path:
    from babyllama.modelio import save_model

    root = Path(run_dir) / "checkpoints"
    final = root / checkpoint_name(step)
    bad = nonfinite_tensor(model, optimizer)
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
        save_model(model, staging)
        faults.point("checkpoint.weights")
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        faults.point("checkpoint.optimizer")
        torch.save(rng_state, staging / "rng.pt")
        (staging / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        files = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        faults.point("checkpoint.index")
        (staging / INDEX).write_text(json.dumps({"step": step, "files": files}, indent=2))
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


def verify_checkpoint(folder: Path) -> Optional[str]:
    """None if every file listed in checkpoint.json is present with its size and checksum, else why not."""
    index = folder / INDEX
    if not index.is_file():
        return "no checkpoint.json (incomplete)"
    try:
        listed = json.loads(index.read_text())["files"]
        facts = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in listed.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return "checkpoint.json is unreadable"
    missing = REQUIRED - set(facts)
    if missing:
        return f"checkpoint.json does not list {', '.join(sorted(missing))}"
    for name, (size, digest) in facts.items():
        if Path(name).name != name or name in (".", ".."):  # an index from elsewhere must not point outside
            return f"checkpoint.json lists a path outside the checkpoint: {name!r}"
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, expected {size}"
        if _sha256(path) != digest:
            return f"{name} fails its checksum"
    return None


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    # By step number, not by name: step_1000000 comes after step_999999.
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path, warn=warnings.warn) -> Optional[Path]:
    """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
    for folder in reversed(list_checkpoints(run_dir)):
        problem = verify_checkpoint(folder)
        if problem is None:
            return folder
        warn(f"skipping damaged checkpoint {folder}: {problem}; falling back to the previous one")
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """--resume_from_checkpoint takes a run folder (newest good checkpoint) or one checkpoint folder."""
    path = Path(path)
    if (path / INDEX).is_file() or path.name.startswith(PREFIX):
        problem = verify_checkpoint(path)
        if problem:
            raise BabyLlamaError(f"checkpoint {path} is damaged: {problem}")
        return path
    if not path.exists():
        raise BabyLlamaError(f"--resume_from_checkpoint {path} does not exist")
    latest = latest_checkpoint(path)
    if latest is None:
        raise BabyLlamaError(f"{path} holds no complete checkpoint to resume from")
    return latest


def load_training_state(folder: Path) -> tuple[dict, dict, dict]:
    """(trainer_state, optimizer state dict, rng state), loaded without unpickling arbitrary objects."""
    trainer_state = json.loads((folder / "trainer_state.json").read_text())
    return trainer_state, safe_torch_load(folder / "optimizer.pt"), safe_torch_load(folder / "rng.pt")


def safe_torch_load(path: Path):
    """torch.load restricted to tensors and plain containers: a file from someone else cannot run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BabyLlamaError(f"refusing to load {path}: it holds Python objects other than tensors, which could run "
                             f"code when unpickled ({str(err).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise BabyLlamaError(f"{path} is not a readable PyTorch tensor file: {str(err).splitlines()[0][:200]}") from None


def prune_checkpoints(run_dir: Path, keep: Optional[int]) -> None:
    if keep is None or keep <= 0:
        return
    for old in list_checkpoints(run_dir)[:-keep]:
        # Rename first, so a kill during the deletion never leaves a half-deleted step_ folder behind.
        trash = old.with_name(f".trash-{old.name}-{os.getpid()}")
        os.replace(old, trash)
        faults.point("checkpoint.prune")
        shutil.rmtree(trash, ignore_errors=True)
