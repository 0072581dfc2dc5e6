"""Checks on the paths a command is given, made before any long work: what kind of folder it is (a run, prepared
data, an export), whether an output can be written, and whether it would overwrite one of the command's inputs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

from babyllama.errors import BabyLlamaError

EXPORT_MARKER = ".babyllama-export.json"


def _manifest(folder: Path) -> Optional[dict]:
    try:
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def folder_kind(path: str | Path) -> Optional[str]:
    """'run', 'data' (made by `babyllama prepare`), 'export', 'run-model' (a run's model/ folder) or None."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / EXPORT_MARKER).is_file():
        return "export"
    manifest = _manifest(path)
    if manifest is not None:
        if "splits" in manifest and "fingerprint" in manifest:
            return "data"
        if "babyllama_version" in manifest and ("kind" in manifest or "config" in manifest):
            return "run"
    if path.name == "model" and folder_kind(path.parent) == "run":
        return "run-model"
    return None


def check_model_path(path: str, flag: str = "--model") -> None:
    """A model argument that is clearly not a model: missing, or a prepared data folder."""
    p = Path(path)
    if not p.exists():
        raise BabyLlamaError(f"{flag} {path}: no such file or folder; give a run folder (runs/NAME), a checkpoint "
                             f"or a model folder")
    if folder_kind(p) == "data":
        raise BabyLlamaError(f"{flag} {path} is a prepared data folder (made by `babyllama prepare`), not a model; "
                             f"give a run folder (runs/NAME) or a model folder")


def check_data_path(path: str, flag: str = "--data") -> None:
    """A corpus or data argument that is a run folder or an export: say so instead of reading its files as text."""
    kind = folder_kind(path)
    if kind in ("run", "run-model", "export"):
        what = {"run": "a run folder", "run-model": "a run's model folder", "export": "an exported model"}[kind]
        raise BabyLlamaError(f"{flag} {path} is {what}, not data; give a corpus file or folder (or, for pretrain, "
                             f"a folder made by `babyllama prepare`)")


def _same_or_inside(a: Path, b: Path) -> bool:
    """a is b, or a lies inside b."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def check_not_input(flag: str, out: str | Path, inputs: dict[str, Optional[str]], nested: bool = True) -> None:
    """Refuse an output that is one of the command's inputs, or (`nested`: a folder output) contains one or lies
    inside one."""
    out = Path(out)
    for input_flag, value in inputs.items():
        if not value:
            continue
        source = Path(value)
        if not source.exists():
            continue
        same = out.resolve() == source.resolve()
        if same or nested and (_same_or_inside(out, source) or _same_or_inside(source, out)):
            raise BabyLlamaError(f"{flag} {out} would overwrite this command's input ({input_flag} {value}); "
                                 f"choose another {flag}")


def check_writable_dir(flag: str, folder: Path) -> None:
    """The folder exists or can be created, and files can be written in it (checked now, not after the work)."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise BabyLlamaError(f"{flag}: {existing} is a file, so {folder} cannot be a folder; choose another {flag}")
    try:  # a real write, not os.access: that says yes to root on a read-only disk
        with tempfile.TemporaryFile(dir=existing, prefix=".babyllama-write-test-"):
            pass
    except OSError as err:
        raise BabyLlamaError(f"{flag}: cannot write in {existing} ({err.strerror or err}); "
                             f"choose a path you can write to") from None


def check_writable_file(flag: str, path: str | Path, inputs: Optional[dict[str, Optional[str]]] = None) -> None:
    """An output file: not a folder, not an input, and its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise BabyLlamaError(f"{flag} {path} is a folder; give a file name (e.g. {path / 'results.json'})")
    if inputs:
        check_not_input(flag, path, inputs, nested=False)  # a results file may go into a run folder
    if path.exists() and not os.access(path, os.W_OK):
        raise BabyLlamaError(f"{flag} {path}: the file is not writable (permission denied); choose another {flag}")
    check_writable_dir(flag, path.parent if str(path.parent) else Path("."))


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary file beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
