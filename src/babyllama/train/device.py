"""Device and numeric precision: which device, which autocast, and the device's real peak for MFU."""

from __future__ import annotations

import contextlib
import functools
import warnings
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


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    if name == "auto":  # a CUDA GPU, else Apple's GPU (Metal), else the CPU
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BabyLlamaError(f"--device '{name}' is not a device; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BabyLlamaError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not mps_available():
        raise BabyLlamaError("--device mps was asked for, but PyTorch sees no Apple GPU (needs an Apple Silicon Mac "
                             "and a PyTorch built with MPS); use --device cpu")
    return device


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


def device_family(device: torch.device) -> str:
    """What the precision, compile and recipe choices depend on:
    cpu, mps, or for CUDA by compute capability: cuda-bf16 (8.0+: A100, A10G, L4, RTX 30xx/40xx, H100, H200, B200;
    bf16 in hardware), cuda-fp16 (7.x: V100, T4, RTX 20xx; fp16 tensor cores, bf16 only emulated) or cuda-fp32
    (older than 7.0: P100, GTX 10xx; Triton, hence torch.compile, does not support them)."""
    if device.type != "cuda":
        return device.type
    major, _ = cuda_capability(device)
    if major >= 8:
        return "cuda-bf16"
    return "cuda-fp16" if major == 7 else "cuda-fp32"


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


def default_precision_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype a run gets when neither --bf16 nor --fp16 is given.

    Not torch.cuda.is_bf16_supported(): it answers True on 7.x cards that only emulate bf16 (slow, and Triton's
    compiled kernels reject it there). MPS stays fp32: the conservative choice, as nothing was run on a Mac.
    """
    family = device_family(device)
    if family == "cuda-bf16" or (family == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float16 if family == "cuda-fp16" else None


def default_bf16(device: torch.device) -> bool:
    return default_precision_dtype(device) == torch.bfloat16


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
    """bf16/fp16 as asked, else the device's default (default_precision_dtype); fp16 trains with loss scaling."""
    if bf16 and fp16:
        raise BabyLlamaError("--bf16 and --fp16 cannot both be on; pick one")
    family = device_family(device)
    if fp16:
        if device.type == "cpu":
            raise BabyLlamaError("--fp16 needs a GPU (loss scaling); on CPU use --bf16 or fp32")
        return Precision(device, torch.float16)
    if bf16 is None:
        return Precision(device, default_precision_dtype(device))
    if bf16 and device.type == "mps":
        raise BabyLlamaError("--bf16 on Apple's GPU (mps) is not supported by babyllama; use fp32 (the default) or "
                             "--fp16 true")
    if bf16 and device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise BabyLlamaError("--bf16 is on but this GPU has no bf16 support; use --fp16 true instead")
        if family != "cuda-bf16":
            major, minor = cuda_capability(device)
            warnings.warn(f"--bf16 on a compute capability {major}.{minor} GPU ({torch.cuda.get_device_name(device)}) "
                          "is emulated: slow, and torch.compile's kernels may fail with it; --fp16 true (the default "
                          "there) uses its fp16 tensor cores", stacklevel=2)
    return Precision(device, torch.bfloat16 if bf16 else None)


def default_compile(device: torch.device, precision: Precision) -> bool:
    """Whether torch.compile is on by default: on CUDA where Triton supports the card (7.0+) and the dtype (bf16 only
    on 8.0+, where it is native); off on CPU (measured no faster on 2 cores) and on MPS (Inductor's Metal backend is
    a prototype in torch 2.x; eager is the safe choice)."""
    family = device_family(device)
    if family == "cuda-bf16":
        return True
    return family == "cuda-fp16" and precision.dtype != torch.bfloat16


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
    elif device.type == "mps":
        torch.mps.synchronize()
