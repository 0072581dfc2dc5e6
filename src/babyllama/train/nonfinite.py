"""Steps whose loss or gradient norm is NaN/Inf: their update is skipped, and too many in a row stop the run.

Deciding on the host would make it wait for every step to finish before it could queue the next one, leaving a
GPU idle while Python launches kernels. With a fused AdamW and no fp16 grad scaler the decision stays on the
device instead: the optimizer reads `found_inf` and leaves weights, moments and step count untouched, and the
counts reach the host only when the loop synchronises anyway (logging, saving, the end). Elsewhere (fp16 with a
GradScaler, an unfused optimizer, FSDP's sharded parameters) the host decides after every step, as before.
"""

from __future__ import annotations

from typing import Callable

import torch

from babyllama.errors import BabyLlamaError


class NonFiniteGuard:
    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, max_in_a_row: float,
                 resume_hint: str, skipped: int = 0, on_device: bool = True):
        self.optimizer, self.device, self.max_in_a_row, self.resume_hint = optimizer, device, max_in_a_row, resume_hint
        self.on_device = on_device and bool(optimizer.defaults.get("fused"))
        self.skipped = skipped  # on the host: as of the last check
        self._in_a_row = torch.zeros((), device=device)
        self._new_skips = torch.zeros((), device=device)

    def step(self, step_loss: torch.Tensor, grad_norm: torch.Tensor, update: Callable[[], None]) -> torch.Tensor:
        """Run update() unless the step is non-finite; returns the device flag `finite` (a 0-d bool tensor)."""
        finite = torch.isfinite(step_loss) & torch.isfinite(grad_norm)
        skip = (~finite).float()
        self._new_skips += skip
        self._in_a_row = (self._in_a_row + 1) * skip
        if self.on_device:
            self.optimizer.found_inf = skip  # fused AdamW skips its update where this is 1
            update()
        elif bool(finite):
            update()
        self.optimizer.zero_grad(set_to_none=True)
        return finite

    @property
    def checks_every_step(self) -> bool:
        return not self.on_device

    def check(self, step: int, write: Callable[[str], None]) -> None:
        """Bring the counts to the host (a synchronisation): report skipped steps, stop after too many in a row."""
        new, in_a_row = int(self._new_skips.item()), int(self._in_a_row.item())
        if not new:
            return
        self.skipped += new
        self._new_skips.zero_()
        write(f"step {step}: {'a step' if new == 1 else f'{new} steps'} with a non-finite loss or gradient; "
              f"update skipped ({self.skipped} so far)")
        if in_a_row >= self.max_in_a_row:
            raise BabyLlamaError(
                f"stopping at step {step}: {in_a_row} steps in a row had a NaN/Inf loss or gradient "
                f"(--max_consecutive_nonfinite {self.max_in_a_row:g}); their updates were skipped, so the weights "
                f"and the last checkpoint are finite. Lower --learning_rate or check the data, then resume with "
                f"--resume_from_checkpoint {self.resume_hint}")
