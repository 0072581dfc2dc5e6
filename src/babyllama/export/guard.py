"""What an export may overwrite: only an earlier export (a folder holding our marker file, which lists the files
it wrote) — never the model being exported, a run folder, a prepared data folder or the user's own files,
unless the user asks with --overwrite (and never, even then, one of the export's own inputs).

The marker, `.babyllama-export.json` beside the exported files, is written last, after the files are complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

from babyllama import __version__
from babyllama.pathchecks import EXPORT_MARKER, check_not_input, check_writable_dir, folder_kind
from babyllama.errors import BabyLlamaError

HF_FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "chat_template.jinja")


def read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / EXPORT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def exported_files(folder: Path) -> set[str]:
    marker = read_marker(folder)
    return set(marker.get("files", [])) if marker else set()


def check_export_target(model: str, out_folder: Path, files: list[Path], overwrite: bool,
                        writes_folder: bool) -> None:
    """Raise BabyLlamaError, before anything is loaded or written, when the export would destroy what is not
    an earlier export (or would overwrite its own input). `writes_folder`: the format fills out_folder (hf)
    rather than writing named files in it (llama2c, gguf)."""
    hint = "choose another --out, or pass --overwrite to replace it"
    if writes_folder:
        check_not_input("--out", out_folder, {"--model": model})
    for file in files:
        check_not_input("--out", file, {"--model": model})
    if out_folder.exists() and not out_folder.is_dir():
        raise BabyLlamaError(f"--out {out_folder} is a file, but this format writes a folder there; "
                             f"choose another --out")
    kind = folder_kind(out_folder)
    if kind in ("run", "data"):
        what = {"run": "a run folder", "data": "a prepared data folder"}[kind]
        raise BabyLlamaError(f"--out {out_folder} is {what}; an export never replaces it: choose another --out")
    if not overwrite:
        if kind == "run-model":
            raise BabyLlamaError(f"--out {out_folder} is the model of the run {out_folder.parent} (its manifest "
                                 f"describes that training); {hint}")
        ours = exported_files(out_folder)
        for file in files:
            if file.is_dir():
                raise BabyLlamaError(f"--out: {file} is a folder; choose another --out")
            if file.exists() and file.name not in ours:
                raise BabyLlamaError(f"--out: {file} already exists and was not written by `babyllama export`; "
                                     f"{hint}")
        if writes_folder and out_folder.is_dir() and kind != "export" and any(out_folder.iterdir()):
            raise BabyLlamaError(f"--out {out_folder} is a folder with other files in it, not an earlier export; "
                                 f"{hint}")
    check_writable_dir("--out", out_folder)


def write_marker(out_folder: Path, model: str, format_name: str, files: Iterable[Path]) -> None:
    """Record (adding to an earlier marker) which files of this folder babyllama exported, and from what."""
    marker = read_marker(out_folder) or {}
    names = sorted(set(marker.get("files", [])) | {f.name for f in files})
    marker.update({"babyllama_version": __version__, "files": names, "last_export": {
        "model": str(Path(model).resolve()), "format": format_name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
    (out_folder / EXPORT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def hf_files(out_folder: Path) -> list[Path]:
    """The files an hf export writes (those that may already be there from an earlier export)."""
    return [out_folder / name for name in HF_FILES]


def file_times(folder: Path) -> dict[str, int]:
    """name -> modification time of the files in folder now (none when it does not exist yet)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def written_since(folder: Path, before: dict[str, int]) -> list[Path]:
    """The files of folder created or rewritten since `before` (file_times): what the export wrote, for the
    marker — and not the user's own files beside them."""
    return [folder / name for name, time_ns in file_times(folder).items()
            if name != EXPORT_MARKER and before.get(name) != time_ns]
