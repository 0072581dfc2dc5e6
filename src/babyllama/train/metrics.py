"""The numbers of one logging window: loss, throughput and MFU, read from the device only when the loop logs."""

from __future__ import annotations

import time
from typing import Any, Optional

import torch

from babyllama.train.device import synchronize


class MetricsWindow:
    def __init__(self, device: torch.device, flops_per_token: float, peak_flops: Optional[float]):
        self.device, self.flops_per_token, self.peak = device, flops_per_token, peak_flops
        self.loss_sum = torch.zeros((), device=device)  # device tensors: adding to them does not synchronise
        self.loss_count = torch.zeros((), device=device)
        self.reset()

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.loss_count.zero_()
        self.started, self.tokens, self.excluded = time.time(), 0, 0.0

    def add(self, step_loss: torch.Tensor, finite: torch.Tensor, tokens: int) -> None:
        """One optimizer step; a skipped (NaN/Inf) step adds its tokens but not its loss."""
        self.loss_sum += torch.where(finite, step_loss, 0.0)
        self.loss_count += finite
        self.tokens += tokens

    def exclude(self, seconds: float) -> None:
        """Evaluation and saving are not training time."""
        self.excluded += seconds

    def read(self, **context: Any) -> dict[str, Any]:
        """The window as one metrics row (then a new window starts). A synchronisation: call it when logging."""
        grad_norm, lr = context.pop("grad_norm"), context.pop("learning_rate")
        step = context.pop("step")
        synchronize(self.device)
        seconds = time.time() - self.started - self.excluded
        metrics = {"step": step, "loss": (self.loss_sum / self.loss_count.clamp(min=1)).item(),
                   "learning_rate": lr, "grad_norm": grad_norm.item(), **context,
                   "tokens_per_second": self.tokens / max(seconds, 1e-9)}
        # keep the historical column order of metrics.jsonl
        order = ["step", "loss", "learning_rate", "grad_norm", "tokens_seen", "tokens_per_second", "epoch",
                 "elapsed_seconds"]
        metrics = {k: metrics[k] for k in order if k in metrics} | {k: v for k, v in metrics.items() if k not in order}
        if self.peak:
            metrics["mfu"] = metrics["tokens_per_second"] * self.flops_per_token / self.peak
        self.reset()
        return metrics


def log_line(metrics: dict[str, Any], total_label: str) -> str:
    return (f"step {total_label} | loss {metrics['loss']:.4f} | lr {metrics['learning_rate']:.2e} | "
            f"grad norm {metrics['grad_norm']:.3f} | {metrics['tokens_per_second']:,.0f} tok/s"
            + (f" | MFU {metrics['mfu']:.1%}" if "mfu" in metrics else ""))
