"""One optimizer step: forward and backward over the micro-batches, gradient clipping, and the guarded update.

Nothing here waits for the device: the loss, gradient norm and finiteness come back as device tensors, and the
loop reads them only when it logs.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from babyllama.train.distributed import local_scalar
from babyllama.train.nonfinite import NonFiniteGuard
from babyllama.train.optim import apply_learning_rate


class OptimizerStep:
    """forward: the (compiled) training module to call; trained: the module as wrapped for several processes (DDP,
    FSDP), which controls gradient synchronisation; model: the plain model, whose parameters are clipped."""

    def __init__(self, *, forward: Callable, trained: torch.nn.Module, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], precision, dist,
                 load_batch: Callable, accumulation: int, max_grad_norm: Optional[float], guard: NonFiniteGuard,
                 device: torch.device):
        self.forward, self.trained, self.model, self.optimizer, self.scaler = forward, trained, model, optimizer, scaler
        self.device = device
        self.precision, self.dist, self.load_batch, self.accumulation = precision, dist, load_batch, accumulation
        self.max_grad_norm, self.guard = max_grad_norm or float("inf"), guard

    def __call__(self, step: int, lr: float, context: Optional[int] = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss of the global batch, gradient norm, finite flag), all on the device. `context`, shorter than the
        batch's rows, cuts each row into windows of that many tokens (sequence-length warmup)."""
        apply_learning_rate(self.optimizer, lr)
        step_loss = torch.zeros((), device=self.device)
        for micro in range(self.accumulation):
            inputs, targets = self.load_batch(step, micro)  # prefetched + pinned on CUDA (train/fastpaths.py)
            if context and context < inputs.shape[1]:  # targets are the inputs shifted: both cut at the same places
                inputs, targets = inputs.reshape(-1, context), targets.reshape(-1, context)
            # Gradients are all-reduced across processes on the last micro-step only.
            with self.dist.gradient_sync(self.trained, micro == self.accumulation - 1):
                with self.precision.autocast():
                    loss = self.forward(inputs, targets) / self.accumulation
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            step_loss += loss.detach()
        step_loss = self.dist.mean(step_loss)  # the loss of the whole global batch, the same on every rank
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = local_scalar(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm))
        # A NaN/Inf step's update is skipped, decided on the device where it can be (train/nonfinite.py).
        finite = self.guard.step(step_loss, grad_norm, self._update)
        return step_loss, grad_norm, finite

    def _update(self) -> None:
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
