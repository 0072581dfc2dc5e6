"""What every export writes beside the model so it can be shared: the model card, and for GGUF an Ollama
Modelfile. One call from `babyllama export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from babyllama.export.card import write_export_card
from babyllama.export.modelfile import write_modelfile


def write_sharing_files(model: str | Path, out: str | Path, format: str, written: str | Path,
                        license: Optional[str] = None) -> list[Path]:
    """`written`: the exported file or folder (the .gguf file for GGUF). Returns the files written."""
    files = [write_modelfile(model, out, written)] if format == "gguf" else []
    return files + [write_export_card(model, out, format, license)]
