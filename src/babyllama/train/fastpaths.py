"""Loop-side fast paths: batches prepared ahead in a background thread, pinned, and copied without blocking.

On a GPU the next micro-batch is gathered from the memmap and pinned while the current step runs, so the
device never waits for the host; the copy to the device is asynchronous and carries int32 token windows (half
of int64), widened and split into inputs and targets on the device. On a CPU the two threads would only
compete with the math for the same cores, so batches are made in place, exactly as before.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch

from babyllama.data.batches import BatchPlan, WindowSampler, split_rows

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchLoader:
    """loader(step, micro) -> (inputs, targets) on the device; the same batches as sampler.batch, in any order.

    With background=True the batch after the one asked for is prepared in a worker thread; asking for a batch
    out of order (resume, a changed plan) simply computes it directly.
    """

    def __init__(self, sampler: WindowSampler, plan: BatchPlan, device: torch.device,
                 background: Optional[bool] = None, pin: Optional[bool] = None, compact: Optional[bool] = None):
        self.sampler, self.plan, self.device = sampler, plan, device
        self.background = device.type == "cuda" if background is None else background
        self.pin = device.type == "cuda" if pin is None else pin
        self.compact = device.type != "cpu" if compact is None else compact
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") if self.background else None
        self._pending: dict[tuple[int, int], Future] = {}

    def _host_rows(self, key: tuple[int, int]) -> torch.Tensor:
        step, micro = key
        rows = self.sampler.rows(self.plan.first_sample(step, micro), self.plan.micro_batch)
        # CPU math wants int64 ids; an accelerator gets int32 (ids are far below 2**31) and widens them itself.
        rows = torch.from_numpy(rows.astype(np.int32 if self.compact else np.int64))
        if self.pin:
            # Pinned host memory lets the copy below run asynchronously with the step already queued.
            rows = rows.pin_memory()
        return rows

    def _next_key(self, key: tuple[int, int]) -> tuple[int, int]:
        step, micro = key
        return (step, micro + 1) if micro + 1 < self.plan.accumulation else (step + 1, 0)

    def __call__(self, step: int, micro: int) -> Batch:
        key = (step, micro)
        future = self._pending.pop(key, None)
        for stale in self._pending.values():  # out of order: forget what was prepared
            stale.cancel()
        self._pending.clear()
        rows = future.result() if future is not None else self._host_rows(key)
        if self._pool is not None:
            upcoming = self._next_key(key)
            self._pending[upcoming] = self._pool.submit(self._host_rows, upcoming)
        non_blocking = self.pin and self.device.type == "cuda"
        return split_rows(rows.to(self.device, non_blocking=non_blocking).long())

    def __enter__(self) -> "BatchLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker thread (the loop does when it ends; __del__ is only the fallback)."""
        if self._pool is not None:
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)

