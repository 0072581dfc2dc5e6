"""Steps whose loss or gradient norm is NaN/Inf: their update is skipped, and too many in a row stop the run.

Deciding on the host would make a single process wait for every step to finish before it could queue the next
one, leaving a GPU idle while Python launches kernels. With a fused AdamW and no fp16 grad scaler the decision
stays on the device instead: the optimizer reads `found_inf` and leaves weights, moments and step count
untouched. The counts reach the host only at checks: whenever the loop logs, evaluates, saves or stops, and at
least every `max_in_a_row` steps, so a streak is still caught within that many steps. With fp16 the GradScaler
skips overflowing updates itself (routine while it calibrates its scale), so only a non-finite loss counts. An
unfused optimizer or FSDP's sharded parameters fall back to deciding on the host after every step.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from babyllama.errors import BabyLlamaError


class NonFiniteGuard:
    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, max_in_a_row: int,
                 resume_hint: str, skipped: int = 0, scaler: Optional[torch.amp.GradScaler] = None,
                 on_device: bool = True):
        self.optimizer, self.max_in_a_row, self.resume_hint, self.scaler = optimizer, max_in_a_row, resume_hint, scaler
        self.on_device = on_device and scaler is None and bool(optimizer.defaults.get("fused"))
        self.deferred = self.on_device or scaler is not None  # counts read at checks only
        self.skipped = skipped  # on the host: as of the last check
        self._checked_at = 0
        self._new_skips = torch.zeros((), device=device)
        self._in_a_row = torch.zeros((), device=device)  # the streak running now
        self._worst = torch.zeros((), device=device)  # the longest streak since the last check

    def step(self, step_loss: torch.Tensor, grad_norm: torch.Tensor, update: Callable[[], None]) -> torch.Tensor:
        """Call update() so that a non-finite step changes nothing; returns the device flag `finite` (0-d bool)."""
        finite = torch.isfinite(step_loss)
        if self.scaler is None:
            finite = finite & torch.isfinite(grad_norm)
        skip = (~finite).float()
        self._new_skips += skip
        self._in_a_row = (self._in_a_row + 1) * skip
        self._worst = torch.maximum(self._worst, self._in_a_row)
        if self.on_device:
            self.optimizer.found_inf = skip  # fused AdamW skips its update where this is 1
            update()
        elif self.scaler is not None or bool(finite):
            update()
        self.optimizer.zero_grad(set_to_none=True)
        return finite

    def due(self, step: int) -> bool:
        """Whether the loop must check after `step` steps even if it neither logs nor saves."""
        return not self.deferred or step - self._checked_at >= self.max_in_a_row

    def check(self, step: int, write: Callable[[str], None]) -> None:
        """Bring the counts to the host (a synchronisation): report skipped steps, stop after too many in a row."""
        self._checked_at = step
        new, worst = int(self._new_skips.item()), int(self._worst.item())
        if not new:
            return
        self.skipped += new
        self._new_skips.zero_()
        self._worst.copy_(self._in_a_row)  # a streak still running carries over to the next check
        write(f"by step {step}: {'a step' if new == 1 else f'{new} steps'} with a non-finite loss or gradient; "
              f"update skipped ({self.skipped} so far)")
        if worst >= self.max_in_a_row:
            raise BabyLlamaError(
                f"stopping at step {step}: {worst} steps in a row had a NaN/Inf loss or gradient "
                f"(--max_consecutive_nonfinite {self.max_in_a_row:g}); their updates were skipped, so the weights "
                f"and the last checkpoint are finite. Lower --learning_rate or check the data, then resume with "
                f"--resume_from_checkpoint {self.resume_hint}")

    def flush(self) -> int:
        """The skip count including steps since the last check, for the run record; never raises (after a device
        error the counters may be unreadable, and the count as of the last check is the best there is)."""
        try:
            self.skipped += int(self._new_skips.item())
            self._new_skips.zero_()
        except Exception:  # noqa: BLE001 - recording a failed run must not fail
            pass
        return self.skipped
