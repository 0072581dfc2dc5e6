"""Device and numeric precision: which device, which autocast, and the device's real peak for MFU."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Optional

import torch

from babyllama.errors import BabyLlamaError

# Dense peak TFLOP/s per device family: (bf16/fp16, tf32). Sources: the vendors' datasheets.
GPU_PEAK_TFLOPS = {
    "H200": (989.0, 494.0), "H100": (989.0, 494.0), "H800": (989.0, 494.0), "GH200": (989.0, 494.0),
    "B200": (2250.0, 1100.0), "A100": (312.0, 156.0), "A800": (312.0, 156.0), "A10G": (125.0, 62.5),
    "L40S": (362.0, 183.0), "L4": (121.0, 60.0), "RTX 4090": (165.0, 82.6), "RTX 3090": (71.0, 35.6),
    "V100": (125.0, 15.7), "T4": (65.0, 8.1),
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BabyLlamaError(f"--device '{name}' is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BabyLlamaError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return device


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matmuls are faster than fp32 (not merely emulated)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if "AMX" in capability:
        return True
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def default_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


@dataclass
class Precision:
    device: torch.device
    dtype: Optional[torch.dtype]  # autocast dtype, None for fp32

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def choose_precision(device: torch.device, bf16: Optional[bool], fp16: bool) -> Precision:
    if bf16 and fp16:
        raise BabyLlamaError("--bf16 and --fp16 cannot both be on; pick one")
    if fp16:
        if device.type != "cuda":
            raise BabyLlamaError("--fp16 needs a CUDA GPU (loss scaling); on CPU use --bf16 or fp32")
        return Precision(device, torch.float16)
    if bf16 is None:
        bf16 = default_bf16(device)
    if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BabyLlamaError("--bf16 is on but this GPU has no bf16 support; use --fp16 true instead")
    return Precision(device, torch.bfloat16 if bf16 else None)


def peak_flops(device: torch.device, precision: Precision) -> Optional[float]:
    """The device's dense peak FLOP/s for this precision, or None when unknown (then no MFU is reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for family, (half, tf32) in GPU_PEAK_TFLOPS.items():
        if family in name:
            return (half if precision.dtype is not None else tf32) * 1e12
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
