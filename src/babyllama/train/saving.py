"""Saving a pretraining run: resumable checkpoints and the final model, from any number of processes.

Every rank takes part in a save (FSDP all-gathers its shards, each rank's RNG state is collected); rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch

from babyllama.layout import RunFolder
from babyllama.modelio import save_weights
from babyllama.train import checkpoint as ckpt


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Checkpointer:
    def __init__(self, *, run_dir: Path, dist, model, optimizer, device: torch.device, keep: Optional[int],
                 trainer_state: Callable[[], dict[str, Any]]):
        self.run = RunFolder(run_dir)
        self.dist, self.model, self.optimizer, self.device, self.keep = dist, model, optimizer, device, keep
        self.trainer_state = trainer_state  # everything resumable besides weights, optimizer and RNG

    def save(self, step: int) -> None:
        model_state, optimizer_state = self.dist.whole_state(self.model, self.optimizer)
        rng, state = self.dist.rng_states(rng_state(self.device)), self.trainer_state()

        def write() -> None:
            ckpt.save_checkpoint(self.run.folder, step, model_config=self.model.config, model_state=model_state,
                                 optimizer_state=optimizer_state, trainer_state=state, rng_state=rng)
            ckpt.prune_checkpoints(self.run.folder, self.keep)

        self.dist.on_main(write)

    def save_model(self, tokenizer) -> Path:
        model_state, _ = self.dist.whole_state(self.model, self.optimizer)
        self.dist.on_main(lambda: save_weights(self.model.config, model_state, self.run.model, tokenizer))
        return self.run.model

    def checkpoints(self) -> list[str]:
        return [str(p) for p in ckpt.list_checkpoints(self.run.folder)]
