"""Where things live in a run folder, and loading model files only after they are verified.

    runs/<run_name>/
        manifest.json, metrics.jsonl, arguments.txt, samples.md   the record (babyllama.records.run)
        .lock                          held (fcntl.flock) by the process training the run; who it is, inside
        tokenizer/                     the tokenizer the run trains with
        model/                         the final model, Hugging Face layout (config.json + model.safetensors)
        adapter/                       a LoRA fine-tune's adapter, as PEFT saves it
        checkpoints/step_000500/       babyllama's resumable checkpoints (checkpoint.json lists every file)
        checkpoints/checkpoint-500/    the Hugging Face Trainer's checkpoints (fine-tunes)

This module is the one owner of that layout and imports no other babyllama module (errors aside), so every other
module can ask it without creating an import cycle.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import warnings
from pathlib import Path
from typing import Optional

from babyllama.errors import BabyLlamaError

MANIFEST = "manifest.json"
LOCK = ".lock"
MODEL = "model"
ADAPTER = "adapter"
TOKENIZER = "tokenizer"
CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step_"
TRAINER_PREFIX = "checkpoint-"
CHECKPOINT_INDEX = "checkpoint.json"
WEIGHTS = "model.safetensors"
SHARDED_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
EXPORT_MARKER = ".babyllama-export"
# Files every babyllama checkpoint lists in its index (format 1 added "format" to checkpoint.json; older ones
# have none and are read as format 0: the same files).
CHECKPOINT_FILES = {"config.json", WEIGHTS, "optimizer.pt", "rng.pt", "trainer_state.json"}
CHECKPOINT_FORMAT = 1


class RunFolder:
    """The paths of one run folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    manifest = property(lambda self: self.folder / MANIFEST)
    lock = property(lambda self: self.folder / LOCK)
    model = property(lambda self: self.folder / MODEL)
    adapter = property(lambda self: self.folder / ADAPTER)
    tokenizer = property(lambda self: self.folder / TOKENIZER)
    checkpoints = property(lambda self: self.folder / CHECKPOINTS)

    def step(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def is_run(self) -> bool:
        """babyllama made this folder: it holds a run manifest."""
        return self.manifest.is_file()


def checkpoint_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def _numbered(folder: Path, prefix: str) -> Optional[int]:
    rest = folder.name[len(prefix):]
    return int(rest) if folder.name.startswith(prefix) and rest.isdigit() else None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """babyllama's step_N checkpoints of a run, by step number (step_1000000 comes after step_999999)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _numbered(p, STEP_PREFIX) is not None]
    return sorted(found, key=lambda p: _numbered(p, STEP_PREFIX))


def newest_trainer_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The Trainer's checkpoint-N with the highest N that holds a model or an adapter."""
    root = Path(run_dir) / CHECKPOINTS
    found = [p for p in root.glob(f"{TRAINER_PREFIX}*") if _numbered(p, TRAINER_PREFIX) is not None
             and ((p / "config.json").is_file() or (p / "adapter_config.json").is_file())]
    return max(found, key=lambda p: _numbered(p, TRAINER_PREFIX), default=None)


def is_adapter_folder(path: str | Path) -> bool:
    """A LoRA adapter as PEFT saves it (a fine-tune's adapter/ or a mid-run checkpoint-N), without a base model."""
    path = Path(path)
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def is_babyllama_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return (path / CHECKPOINT_INDEX).is_file() or path.name.startswith(STEP_PREFIX)


# --------------------------------------------------------------------------- verifying files


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_problem(path: Path) -> Optional[str]:
    """None if `path` is a whole safetensors file (header readable, every tensor's bytes present), else why not.

    Cheap: reads the header only. A truncated, empty or foreign file is caught before any loader sees it.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return "is empty" if size == 0 else f"is only {size} bytes (truncated)"
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8 or header_len > 100 << 20:
                return "is not a safetensors file, or is truncated (its header runs past the end)"
            header = json.loads(handle.read(header_len))
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    except (ValueError, UnicodeDecodeError):
        return "is not a safetensors file (its header is not readable)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is not readable)"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            return f"is not a safetensors file (tensor {name!r} has no data offsets)"
    if 8 + header_len + end != size:
        return f"is truncated or damaged: the header promises {8 + header_len + end} bytes, the file has {size}"
    return None


def _damaged(path: Path, problem: str) -> BabyLlamaError:
    where = path.parent
    return BabyLlamaError(f"{path} {problem}. The model in {where} cannot be used: re-export or re-train it, or "
                          f"point at an earlier checkpoint (a run's checkpoints/step_N folder)")


def load_safetensors(path: Path) -> dict:
    """The tensors of a verified safetensors file."""
    problem = safetensors_problem(path)
    if problem:
        raise _damaged(path, problem)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise _damaged(path, f"cannot be read ({err})") from None


def safe_torch_load(path: Path):
    """torch.load restricted to tensors and plain containers: a file from someone else cannot run code."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BabyLlamaError(f"refusing to load {path}: it holds Python objects other than tensors, which could run "
                             f"code when unpickled ({str(err).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise BabyLlamaError(f"{path} is not a readable PyTorch tensor file: {str(err).splitlines()[0][:200]}") from None


def read_weights(folder: Path) -> dict:
    """A model folder's weights (single file, sharded, or pytorch_model.bin), each file verified before use."""
    if (folder / WEIGHTS).is_file():
        return load_safetensors(folder / WEIGHTS)
    index = folder / SHARDED_INDEX
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BabyLlamaError(f"{index} is not a readable safetensors index (weight_map missing)") from None
        state: dict = {}
        for name in files:
            if Path(name).name != name:
                raise BabyLlamaError(f"{index} points outside its folder: {name!r}")
            state.update(load_safetensors(folder / name))
        return state
    if (folder / TORCH_WEIGHTS).is_file():
        return safe_torch_load(folder / TORCH_WEIGHTS)
    raise BabyLlamaError(f"{folder} holds no model weights ({WEIGHTS}, a sharded index, or {TORCH_WEIGHTS})")


def checkpoint_format(folder: Path) -> int:
    """The format version written in a checkpoint's index (0: written before formats were numbered)."""
    try:
        return int(json.loads((folder / CHECKPOINT_INDEX).read_text()).get("format", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def verify_checkpoint(folder: Path) -> Optional[str]:
    """None if every file listed in checkpoint.json is present with its size and checksum, else why not."""
    index = folder / CHECKPOINT_INDEX
    if not index.is_file():
        return "no checkpoint.json (incomplete)"
    try:
        content = json.loads(index.read_text())
        facts = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in content["files"].items()}
        version = int(content.get("format", 0))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return "checkpoint.json is unreadable"
    if version > CHECKPOINT_FORMAT:
        return f"it was written in checkpoint format {version} by a newer babyllama (this one reads up to " \
               f"{CHECKPOINT_FORMAT}); upgrade babyllama"
    missing = CHECKPOINT_FILES - set(facts)
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
        if sha256(path) != digest:
            return f"{name} fails its checksum"
    return None


def latest_checkpoint(run_dir: str | Path, warn=warnings.warn) -> Optional[Path]:
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
    if is_babyllama_checkpoint(path):
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


def resolve_model_folder(path: str | Path) -> Path:
    """The folder that `--model PATH` loads: a model folder (or a LoRA adapter folder) as given; for a run folder its
    final model/, or else its newest complete checkpoint: babyllama's step_N, or a fine-tune's checkpoint-N (which
    holds only the adapter when the run trains LoRA)."""
    path = Path(path)
    if (path / "config.json").is_file() or is_adapter_folder(path):
        return path
    if (path / MODEL / "config.json").is_file():
        return path / MODEL
    if (path / CHECKPOINTS).is_dir():
        latest = latest_checkpoint(path) or newest_trainer_checkpoint(path)
        if latest is not None:
            return latest
    if not path.exists():
        raise BabyLlamaError(f"--model {path} does not exist")
    raise BabyLlamaError(f"{path} is neither a model folder (config.json + {WEIGHTS}) nor a run folder with a model "
                         f"or checkpoint")


def verify_model_folder(folder: Path) -> None:
    """Every weights file of a (non-adapter) model folder is whole, before any loader (ours or transformers') reads
    it; a checkpoint is checked against its index as well."""
    if is_babyllama_checkpoint(folder):
        problem = verify_checkpoint(folder)
        if problem:
            raise BabyLlamaError(f"checkpoint {folder} is damaged: {problem}; use an earlier checkpoint")
    candidates = [folder / WEIGHTS] if (folder / WEIGHTS).is_file() else []
    if not candidates and (folder / SHARDED_INDEX).is_file():
        try:
            names = set(json.loads((folder / SHARDED_INDEX).read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BabyLlamaError(f"{folder / SHARDED_INDEX} is not a readable safetensors index") from None
        candidates = [folder / n for n in sorted(names)]
    for path in candidates:
        if not path.is_file():
            raise _damaged(path, "is missing")
        problem = safetensors_problem(path)
        if problem:
            raise _damaged(path, problem)


def tokenizer_folder(model_folder: Path) -> Optional[Path]:
    """Where the tokenizer of a model lives: beside it, or the run folder's tokenizer/ for a model/ or checkpoint."""
    for candidate in (model_folder, model_folder / TOKENIZER, model_folder.parent / TOKENIZER,
                      model_folder.parent.parent / TOKENIZER):
        if (candidate / "tokenizer.json").is_file():
            return candidate
    return None


def run_folder_of(path: str | Path) -> Optional[Path]:
    """The run folder that holds `path` (itself, or its model/ or a checkpoint), if any."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None
