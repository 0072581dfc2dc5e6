"""Pre-flight checks of the output folder: writable, and with room for the checkpoints the run will keep.

Why before the first step: a run that finds out at its first save (maybe hours in) that the disk is full or
read-only has wasted all of that time. The estimate is deliberately simple and a little generous.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from babyllama.errors import BabyLlamaError

FP32 = 4
ADAM_STATES = 2  # exp_avg and exp_avg_sq, each as large as the weights
MARGIN = 1.1  # file headers, tokenizer, metrics, samples


def checkpoint_bytes(num_params: int) -> int:
    """fp32 weights (safetensors) + AdamW's two moments + a few small files."""
    return num_params * FP32 * (1 + ADAM_STATES) + (1 << 20)


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(folder: Path) -> None:
    """Create the folder (as the run would) and a scratch file in it; a clear error if either fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise BabyLlamaError(f"cannot write to the output folder {folder}: {err.strerror or err}; choose another "
                             f"--output_dir") from None


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def needed_bytes(num_params: int, keep: Optional[int], planned_saves: int, existing: int = 0) -> int:
    """Room for the checkpoints still to be kept (plus one being written) and the final model."""
    kept = planned_saves if keep is None or keep <= 0 else min(keep, planned_saves)
    new_copies = max(1, kept + 1 - existing)
    return int((checkpoint_bytes(num_params) * new_copies + num_params * FP32) * MARGIN)


def check_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(_nearest_existing(folder)).free
    if free < needed:
        raise BabyLlamaError(f"not enough free disk space in {folder}: {_format_bytes(free)} free, but {what} need "
                             f"about {_format_bytes(needed)}. Free some space, lower --save_total_limit or choose "
                             f"another --output_dir")


def preflight(run_dir: Path, num_params: int, keep: Optional[int], planned_saves: int, existing: int = 0) -> None:
    """Both checks, before anything of the run is written."""
    check_writable(_nearest_writable_target(run_dir))
    kept = planned_saves if keep is None or keep <= 0 else min(keep, planned_saves)
    check_space(run_dir, needed_bytes(num_params, keep, planned_saves, existing),
                f"{kept} checkpoint(s) of {_format_bytes(checkpoint_bytes(num_params))} (one more while saving) "
                f"and the final model")


def _nearest_writable_target(run_dir: Path) -> Path:
    # The run folder itself may not exist yet (a new run); probe its parent, the --output_dir.
    return run_dir if run_dir.exists() else run_dir.parent

