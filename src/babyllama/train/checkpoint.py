"""Resumable checkpoints, written atomically and verified on load.

    checkpoints/step_000500/
        config.json, model.safetensors   the model in Hugging Face layout (loadable on its own)
        optimizer.pt                     AdamW state (tensors only: loaded with weights_only=True)
        rng.pt                           every RNG state the step consumed (CPU, CUDA)
        trainer_state.json               step, tokens seen, elapsed time, schedule, counters
        checkpoint.json                  size and sha256 of each file above; written last

A checkpoint is written into a hidden temporary folder, flushed, and renamed into place, so a crash leaves
either the previous complete checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from babyllama.errors import BabyLlamaError

PREFIX = "step_"
INDEX = "checkpoint.json"


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


def save_checkpoint(run_dir: Path, step: int, model, optimizer, trainer_state: dict[str, Any],
                    rng_state: dict[str, Any], tokenizer=None) -> Path:
    from babyllama.modelio import save_model

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    staging = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_model(model, staging)
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(rng_state, staging / "rng.pt")
        (staging / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        files = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        (staging / INDEX).write_text(json.dumps({"step": step, "files": files}, indent=2))
        _fsync_file(staging / INDEX)
        _fsync_dir(staging)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_dir(root)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise BabyLlamaError(f"could not write checkpoint {final}: {err.strerror or err}. The previous checkpoints "
                             f"are intact; free disk space and resume with --resume_from_checkpoint {run_dir}") from None
    return final


def verify_checkpoint(folder: Path) -> Optional[str]:
    """None if every file listed in checkpoint.json is present with its size and checksum, else why not."""
    index = folder / INDEX
    if not index.is_file():
        return "no checkpoint.json (incomplete)"
    try:
        listed = json.loads(index.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return "checkpoint.json is unreadable"
    for name, facts in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != facts["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, expected {facts['bytes']}"
        if _sha256(path) != facts["sha256"]:
            return f"{name} fails its checksum"
    return None


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), key=lambda p: p.name)


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
    optimizer = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    return trainer_state, optimizer, rng


def prune_checkpoints(run_dir: Path, keep: Optional[int]) -> None:
    if keep is None or keep <= 0:
        return
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
