"""What a run has done so far: the resumable counters of the loop, saved and loaded in one call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    elapsed_before: float = 0.0  # seconds spent in earlier sessions of this run (before a resume)
    skipped_steps: int = 0  # NaN/Inf steps whose update was skipped (as of the last check)
    best: dict = field(default_factory=dict)  # the best evaluation so far, with its step
    started: float = field(default_factory=time.time)  # this session's clock

    def elapsed(self) -> float:
        """Seconds of training across every session of the run."""
        return self.elapsed_before + time.time() - self.started

    def advance(self, tokens: int) -> None:
        self.step += 1
        self.tokens_seen += tokens

    def observe_eval(self, metrics: dict[str, Any]) -> None:
        if not self.best or metrics["eval_loss"] < self.best.get("eval_loss", float("inf")):
            self.best = {**metrics, "step": self.step}

    def state_dict(self) -> dict[str, Any]:
        """The names trainer_state.json has always used."""
        return {"step": self.step, "tokens_seen": self.tokens_seen, "elapsed_seconds": self.elapsed(),
                "skipped_steps": self.skipped_steps, "best": self.best}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.step, self.tokens_seen = int(saved["step"]), int(saved["tokens_seen"])
        self.elapsed_before = float(saved.get("elapsed_seconds", 0.0))
        self.skipped_steps, self.best = int(saved.get("skipped_steps", 0)), dict(saved.get("best", {}))
        self.started = time.time()
