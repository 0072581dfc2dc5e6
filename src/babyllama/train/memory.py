"""Running out of accelerator memory ends with a message that says what to lower, not a CUDA traceback.

`out_of_memory_error` turns torch.OutOfMemoryError (CUDA, and MPS's "out of memory" RuntimeError) into a
BabyLlamaError with the device's numbers and the run's settings; `GuardOutOfMemory` wraps the optimizer step with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from babyllama.errors import BabyLlamaError

GIB = 2 ** 30


@dataclass
class MemorySettings:
    """What a training step's memory depends on, as the user set it."""

    batch: int
    seq_len: int
    accumulation: int = 1
    gradient_checkpointing: bool = False
    loss_impl: str = "auto"
    precision: str = "fp32"


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    # MPS (and some older CUDA paths) raise a plain RuntimeError.
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def device_memory(device: torch.device) -> dict[str, float]:
    """GiB figures for the message: total, in use by tensors, reserved by the allocator, peak (what is known)."""
    out: dict[str, float] = {}
    try:
        if device.type == "cuda":
            out["total"] = torch.cuda.get_device_properties(device).total_memory / GIB
            out["allocated"] = torch.cuda.memory_allocated(device) / GIB
            out["reserved"] = torch.cuda.memory_reserved(device) / GIB
            out["peak"] = torch.cuda.max_memory_allocated(device) / GIB
        elif device.type == "mps":
            out["allocated"] = torch.mps.current_allocated_memory() / GIB
            out["reserved"] = torch.mps.driver_allocated_memory() / GIB
    except (RuntimeError, AttributeError, AssertionError):  # the device may be unusable after the failure
        pass
    return out


def out_of_memory_error(err: BaseException, device: torch.device, settings: MemorySettings) -> BabyLlamaError:
    """A BabyLlamaError naming the numbers and, in order of least harm, what to lower."""
    memory = device_memory(device)
    figures = ", ".join(f"{name} {value:.2f} GiB" for name, value in memory.items())
    s = settings
    fixes = []
    if s.batch > 1:
        # Halving the micro-batch and doubling accumulation keeps the global batch (and the run's results).
        fixes.append(f"--per_device_train_batch_size {max(1, s.batch // 2)} --gradient_accumulation_steps "
                     f"{s.accumulation * 2} (same global batch of {s.batch * s.accumulation} sequences)")
    if not s.gradient_checkpointing:
        fixes.append("--gradient_checkpointing true (recompute activations: about 1/3 more compute, far less memory)")
    if s.loss_impl in ("standard", "auto"):
        fixes.append("--loss_impl chunked (or fused on CUDA: no full-batch logits)")
    if s.seq_len > 128:
        fixes.append(f"--seq_len {s.seq_len // 2} (shorter context)")
    if s.precision == "fp32" and device.type == "cuda":
        fixes.append("--bf16 true on 8.0+ GPUs or --fp16 true on 7.x (half-size activations)")
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" and _named(device) else "")
    lines = [f"out of memory on {where} at batch {s.batch} x seq_len {s.seq_len}, gradient accumulation "
             f"{s.accumulation}, gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}, loss "
             f"{s.loss_impl}, {s.precision}" + (f" [{figures}]" if figures else "") + ".",
             "Lower the memory a step needs, first things first:"]
    lines += [f"  {i}. {fix}" for i, fix in enumerate(fixes, 1)]
    if not fixes:
        lines.append("  a smaller --preset (the model itself does not fit)")
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    lines.append(f"(PyTorch said: {first_line[:300]})")
    return BabyLlamaError("\n".join(lines))


def _named(device: torch.device) -> bool:
    try:
        torch.cuda.get_device_name(device)
        return True
    except (RuntimeError, AssertionError):
        return False


class GuardOutOfMemory:
    """Calls `step` and turns an out-of-memory failure into out_of_memory_error's message."""

    def __init__(self, step: Callable, device: torch.device, settings: MemorySettings):
        self.step, self.device, self.settings = step, device, settings

    def __call__(self, *args, **kwargs):
        try:
            return self.step(*args, **kwargs)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            message = out_of_memory_error(err, self.device, self.settings)
        # Raised outside the except block, so the CUDA traceback is not chained onto the message.
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        raise message

    def __getattr__(self, name):  # the wrapped step's attributes (e.g. the guard) stay reachable
        if name == "step":
            raise AttributeError(name)
        return getattr(self.step, name)


def guard_out_of_memory(step: Callable, device: torch.device, cfg, precision_name: Optional[str] = None):
    """The loop's hook: wrap the optimizer step with the run's settings (a TrainConfig)."""
    return GuardOutOfMemory(step, device, MemorySettings(
        batch=cfg.per_device_train_batch_size, seq_len=cfg.seq_len, accumulation=cfg.gradient_accumulation_steps,
        gradient_checkpointing=bool(getattr(cfg, "gradient_checkpointing", False)), loss_impl=cfg.loss_impl,
        precision=precision_name or ("bf16" if cfg.bf16 else "fp16" if cfg.fp16 else "fp32")))
