"""When the loop stops, logs, evaluates and saves, and where the learning-rate schedule stands.

Two ways to size a run:
  * by steps (--max_steps, or --num_train_epochs): the schedule's progress is step / total;
  * by time (--max_time): the schedule's progress is the fraction of the budget spent, so the learning rate decays
    monotonically as the clock runs and the run ends when the budget (less the time the final evaluation will take)
    is used up. Warmup still counts steps (it is about the optimizer's first updates, which compile and cache
    warm-up time says nothing about): --warmup_steps, or --warmup_ratio of the steps the budget is estimated to hold
    when the step time is first measured.

With several processes rank 0's clock decides for all: `share`/`adopt` carry its view through the loop's one
agreement per step, so every rank uses the same learning rate and stops, evaluates and saves at the same step.
"""

from __future__ import annotations

import time
from typing import Optional

WARM_STEPS = 3  # the first steps compile and fill caches: their time says nothing about the step rate
EVALS_PER_RUN = 10
# Under --max_time, mid-run evaluations (with the checkpoint each one writes) may take at most this share of the
# budget: once one is timed, they are spaced at least 1/EVAL_SHARE of its length apart. A 15m model on 2 CPU cores
# spends about 12 s per evaluation of the validation split, so 10 of them would take a fifth of a 10-minute budget.
EVAL_SHARE = 0.05
PPB = 1_000_000_000  # progress travels between ranks as an integer in parts per billion


def training_context(run_fraction: float, seq_len: int, warmup_ratio: float) -> int:
    """Sequence-length warmup: a quarter of seq_len over the first half of the warmup, half of it over the second,
    then all of it. Short windows are cut from the same rows, so a step keeps its tokens and the data order."""
    if run_fraction >= warmup_ratio:
        return seq_len
    return seq_len // 4 if run_fraction < warmup_ratio / 2 else seq_len // 2


class Cadence:
    def __init__(self, *, max_steps: int, max_time: Optional[float], epoch_steps: int, logging_steps: int,
                 eval_steps: Optional[int], save_steps: Optional[int], warmup_steps: int, warmup_ratio: float,
                 step: int, elapsed: float):
        self.budget = max_time if max_steps <= 0 and max_time else None
        self.total = max_steps if max_steps > 0 else (None if self.budget else max(1, epoch_steps))
        self.logging_steps = logging_steps
        self.eval_steps = eval_steps or (None if self.budget else max(1, self.total // EVALS_PER_RUN))
        self.save_steps = save_steps
        self.warmup_ratio = warmup_ratio
        self.warmup_steps = warmup_steps or (0 if self.budget else int(warmup_ratio * self.total))
        if self.budget and not warmup_steps and warmup_ratio:
            self.warmup_steps = max(1, int(warmup_ratio * (step + 1000)))  # until the step time is measured
            self._warmup_pending = True
        else:
            self._warmup_pending = False
        self.reserve = 0.0  # seconds the final evaluation and save will take (the last evaluation's)
        self.progress = min(1.0, elapsed / self.budget) if self.budget else 0.0
        self.warmup_end_progress: Optional[float] = None
        self.eval_interval = (self.budget / EVALS_PER_RUN) if self.budget and not eval_steps else None
        self.next_eval_time = self.eval_interval
        self.eval_due_by_time = False
        self._first_step, self._step_seconds = step, None
        self._last_start: Optional[float] = None
        self._overhead = 0.0

    # ------------------------------------------------------------------ the schedule

    def position(self, step: int) -> tuple[float, float]:
        """(fraction of warmup done, fraction of the decay done) for optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps, 0.0
        if self.budget is None:
            return 1.0, (step - self.warmup_steps) / max(1, self.total - self.warmup_steps)
        if self.warmup_end_progress is None:
            self.warmup_end_progress = self.progress
        start = self.warmup_end_progress
        return 1.0, (self.progress - start) / max(1e-9, 1.0 - start)

    def run_fraction(self, step: int) -> float:
        """How much of the run is done: the share of the budget spent, or of the steps."""
        return self.progress if self.budget else min(1.0, step / self.total)

    # ------------------------------------------------------------------ the clock (rank 0's counts)

    def step_started(self, step: int) -> None:
        """Time whole iterations but their evaluation/save: the host queues steps ahead of the device, so the
        device's time shows up where the loop waits (at logging), not inside the step."""
        now = time.time()
        if self._last_start is not None and step - self._first_step >= WARM_STEPS:
            seconds = now - self._last_start - self._overhead
            self._step_seconds = seconds if self._step_seconds is None else 0.9 * self._step_seconds + 0.1 * seconds
        self._last_start, self._overhead = now, 0.0

    def overhead(self, seconds: float, *, evaluation: bool = False) -> None:
        """Time spent evaluating or saving: not step time; an evaluation's length is kept for the final one."""
        self._overhead += seconds
        if evaluation:
            self.reserve = seconds
            if self.eval_interval is not None:  # the next evaluation too moves to the new spacing
                interval = max(self.budget / EVALS_PER_RUN, seconds / EVAL_SHARE)
                self.next_eval_time += interval - self.eval_interval
                self.eval_interval = interval

    def share(self, step: int, elapsed: float) -> list[int]:
        """This process's view after `step` steps, as integers for the loop's agreement between ranks."""
        if self.budget is None:
            return [0, 0, self.warmup_steps]
        usable = max(1e-9, self.budget - self.reserve)
        progress = max(self.progress, min(1.0, elapsed / usable))  # never backwards, even if the reserve shrinks
        warmup = self.warmup_steps
        if self._warmup_pending and self._step_seconds:
            left = max(0.0, usable - elapsed)
            warmup = max(1, int(self.warmup_ratio * (step + left / self._step_seconds)))
        due = self.next_eval_time is not None and elapsed >= self.next_eval_time
        return [int(progress * PPB), int(due), warmup]

    def adopt(self, shared: list[int]) -> None:
        """Take rank 0's view (our own with one process)."""
        if self.budget is None:
            return
        self.progress = max(self.progress, shared[0] / PPB)
        self.eval_due_by_time = bool(shared[1])
        if self._warmup_pending and shared[2] != self.warmup_steps:
            self.warmup_steps, self._warmup_pending = shared[2], False
        if self.eval_due_by_time:
            self.next_eval_time += self.eval_interval

    # ------------------------------------------------------------------ decisions after a step

    def finished(self, step: int) -> bool:
        return self.progress >= 1.0 if self.budget else step >= self.total

    def should_log(self, step: int) -> bool:
        return step % self.logging_steps == 0 or self.finished(step)

    def should_eval(self, step: int) -> bool:
        """A mid-run evaluation (the final one always happens)."""
        if self.finished(step):
            return False
        return bool(self.eval_steps and step % self.eval_steps == 0) or self.eval_due_by_time

    def should_save(self, step: int, evaluated: bool) -> bool:
        """The one save rule: every --save_steps steps, else after every evaluation."""
        if self.finished(step):
            return False  # the final checkpoint is written after the final evaluation
        return step % self.save_steps == 0 if self.save_steps else evaluated

    # ------------------------------------------------------------------ resuming

    def state_dict(self) -> dict:
        return {"warmup_steps": self.warmup_steps, "warmup_end_progress": self.warmup_end_progress}

    def load_state_dict(self, saved: Optional[dict], step: int) -> None:
        """Continue the schedule where it was; a checkpoint from before time-based schedules has no cadence, and
        the decay then starts from where warmup would have ended."""
        if not self.budget:
            return
        if saved:
            self.warmup_steps, self._warmup_pending = int(saved["warmup_steps"]), False
            self.warmup_end_progress = saved.get("warmup_end_progress")
        elif step >= WARM_STEPS:
            self._warmup_pending = False
            self.warmup_steps = min(self.warmup_steps, step)
            self.warmup_end_progress = min(self.progress, self.warmup_ratio)

    # ------------------------------------------------------------------ for people

    def planned_saves(self) -> int:
        every = self.save_steps or self.eval_steps
        return max(1, self.total // every + 1) if self.total and every else 1

    def describe(self) -> str:
        return f"{self.budget:g}s budget" if self.budget else f"{self.total} steps"

    def bar_total(self) -> tuple[float, str]:
        """What the progress bar counts: steps, or seconds of the budget (a total that never moves)."""
        return (self.budget, "s") if self.budget else (self.total, "step")

    def total_label(self, step: int) -> str:
        return f"{step:>6}/{self.total}" if self.total else f"{step:>6}"
