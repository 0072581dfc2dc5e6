"""AdamW (no decay on norms and biases) and learning-rate schedules named as in Hugging Face."""

from __future__ import annotations

import math

import torch

from babyllama.train.muon import MuonWithAdamW


def build_optimizer(model: torch.nn.Module, *, learning_rate: float, weight_decay: float, betas: tuple[float, float],
                    eps: float, device: torch.device, optim: str = "adamw", muon_learning_rate: float | None = None,
                    muon_weight_decay: float = 0.1, muon_momentum: float = 0.95):
    if optim == "muon":
        return MuonWithAdamW(model, learning_rate=learning_rate, weight_decay=weight_decay, betas=betas, eps=eps,
                             muon_learning_rate=muon_learning_rate or learning_rate,
                             muon_weight_decay=muon_weight_decay, muon_momentum=muon_momentum, device=device)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Matrices (linear weights, embeddings) decay; vectors (norm gains, biases) do not.
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel exists for CUDA and CPU and is the fastest where it runs.
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, fused=device.type in ("cuda", "cpu"))


def learning_rate_at(step: int, *, total_steps: int, warmup_steps: int, peak: float, kind: str,
                     min_ratio: float, decay_ratio: float = 0.2) -> float:
    """Learning rate for optimizer step `step` (0-based) of a run of `total_steps`."""
    if step < warmup_steps:
        return learning_rate_for(warmup=(step + 1) / warmup_steps, decay=0.0, peak=peak, kind=kind,
                                 min_ratio=min_ratio, decay_ratio=decay_ratio)
    return learning_rate_for(warmup=1.0, decay=(step - warmup_steps) / max(1, total_steps - warmup_steps),
                             peak=peak, kind=kind, min_ratio=min_ratio, decay_ratio=decay_ratio)


def learning_rate_for(*, warmup: float, decay: float, peak: float, kind: str, min_ratio: float,
                      decay_ratio: float = 0.2) -> float:
    """Learning rate at a point of the schedule: `warmup` is the fraction of warmup done (1 once it is over),
    `decay` the fraction of the decay done (by steps, or by time under --max_time: train/cadence.py).
    `warmup_stable_decay` holds the peak, then falls linearly to the floor over the last `decay_ratio` of the run."""
    if kind == "constant":
        return peak
    if warmup < 1.0:
        return peak * warmup
    if kind == "constant_with_warmup":
        return peak
    progress = min(1.0, max(0.0, decay))
    floor = peak * min_ratio
    if kind == "linear":
        return peak - (peak - floor) * progress
    if kind == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "warmup_stable_decay":
        into_tail = (progress - (1.0 - decay_ratio)) / decay_ratio if decay_ratio > 0 else 0.0
        return peak - (peak - floor) * min(1.0, max(0.0, into_tail))
    raise ValueError(f"unknown schedule {kind}")


def apply_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the step's learning rate on every parameter group, scaled by the group's own `lr_scale` (1 unless an
    optimizer gives some groups their own rate, e.g. a second optimizer for matrices)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
