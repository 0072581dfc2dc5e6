"""Several processes, one run: torchrun's environment -> a process group, DDP or FSDP2, and agreement helpers.

The one distributed API of babyllama: our loop starts the group (`Distributed.start`); the Hugging Face path, where
the Trainer owns the group, reads it (`Distributed.current`). Global-batch arithmetic for resuming on another
number of processes is in train/global_batch.py, the torchrun command line in train/launch.py.

babyllama never starts processes itself: `torchrun` (or `babyllama pretrain --nproc_per_node N`, which execs it)
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and `Distributed.start` joins that group:
gloo for CPU tensors, NCCL for CUDA ones, chosen from the device. Without those variables (or with one process)
everything here is a no-op and the loop runs exactly as on one device.

Rules the loop follows with these helpers:
  * every rank trains on its own slice of each global batch (data.batches.BatchPlan takes the rank);
  * gradients are all-reduced on the last micro-step of a step only (DDP no_sync / FSDP set_requires_gradient_sync);
  * rank 0 alone writes the run record, checkpoints, samples and trackers; when it fails, every rank fails;
  * decisions that may differ between ranks (a signal arrived, the time budget moved) are agreed once per step.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional

import torch

from babyllama.errors import BabyLlamaError

def env_world_size() -> int:
    """Processes in this run as torchrun announced them (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise BabyLlamaError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: Optional[str] = None  # None: a single process, no group
    fsdp: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------ setup

    @classmethod
    def start(cls, device: torch.device, timeout_minutes: float = 30.0) -> tuple["Distributed", torch.device]:
        """Join torchrun's process group (if any); returns it and the device this rank trains on."""
        world = env_world_size()
        if world == 1:
            return cls(), device
        import torch.distributed as dist

        rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise BabyLlamaError(f"local rank {local_rank} has no GPU: this node has {count}; start at most "
                                     f"{count} processes per node (--nproc_per_node {count})")
            # One GPU per process, picked by the local rank: "cuda" and "cuda:N" both mean "my GPU" here.
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK") if v not in os.environ]
            if missing:
                raise BabyLlamaError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with torchrun "
                                     f"(or `babyllama pretrain --nproc_per_node N`)")
            kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=timeout_minutes)}
            if device.type == "cuda":
                kwargs["device_id"] = device  # eager NCCL init: a bad GPU fails here, not at the first step
            dist.init_process_group(**kwargs)
        return cls(rank=rank, local_rank=local_rank, world_size=world, backend=backend), device

    @classmethod
    def current(cls) -> "Distributed":
        """The process group someone else started (the Hugging Face Trainer, accelerate), as it stands now.

        Before a group is up, the launch's RANK still tells which process is the main one, and there is nobody to
        agree with yet.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                       world_size=dist.get_world_size(), backend=dist.get_backend())
        return cls(rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    @staticmethod
    def teardown() -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ the model

    def wrap(self, model: torch.nn.Module, device: torch.device, fsdp: bool) -> torch.nn.Module:
        """The module to train: DDP around the model, or the model sharded in place by FSDP2.

        With FSDP, each transformer block is one unit of all-gather/reduce-scatter and the root (embeddings, final
        norm and the classifier, tied or not) is another, so the tied weight never straddles two units.
        """
        if not self.active:
            return model
        if fsdp:
            from torch.distributed.fsdp import fully_shard

            for block in model.model.layers:
                fully_shard(block)
            fully_shard(model)
            self.fsdp = True
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def gradient_sync(self, module: torch.nn.Module, last_micro_step: bool):
        """No gradient all-reduce on accumulation micro-steps, only on the last one of a step."""
        if not self.active:
            return contextlib.nullcontext()
        if self.fsdp:
            module.set_requires_gradient_sync(last_micro_step)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if last_micro_step else module.no_sync()

    # ------------------------------------------------------------------ agreement

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of a scalar over ranks (the loss of the whole global batch)."""
        if not self.active:
            return value
        import torch.distributed as dist

        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def agree(self, any_flag: bool, *main_values: int, device: torch.device) -> tuple[bool, list[int]]:
        """One all-reduce per step: (did any rank raise the flag, rank 0's integer values)."""
        if not self.active:
            return any_flag, list(main_values)
        import torch.distributed as dist

        own = [int(any_flag)] + [int(v) if self.is_main else 0 for v in main_values]
        packed = torch.tensor(own, dtype=torch.int64, device=device)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        out = packed.tolist()
        return out[0] > 0, out[1:]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value of a small picklable object, on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, action: Callable[[], Any]) -> Any:
        """Run action on rank 0 only; if it fails there, every rank raises, so none waits forever."""
        if not self.active:
            return action()
        result, failure = None, None
        if self.is_main:
            try:
                result = action()
            except Exception as err:  # the other ranks must hear about it too
                failure = err
        problem = self.broadcast(None if failure is None else str(failure) if isinstance(failure, BabyLlamaError)
                                 else f"{type(failure).__name__}: {failure}")
        if failure is not None:
            raise failure
        if problem is not None:
            raise BabyLlamaError(f"rank 0 failed: {problem}")
        return result

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    # ------------------------------------------------------------------ checkpoints

    def whole_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
        """(model state dict, optimizer state dict) as rank 0 saves them: whole tensors, single-process format.

        Under FSDP every rank must call this (the shards are all-gathered); the result is what one process would
        hold, so checkpoints stay one Hugging Face model plus a plain optimizer state and resume on any number of
        processes, sharded or not.
        """
        if not self.fsdp:
            return model.state_dict(), optimizer.state_dict()
        return _full(model.state_dict()), _full(optimizer.state_dict())

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Load a whole (single-process format) optimizer state; under FSDP each rank keeps its own shard."""
        if self.fsdp:
            from torch.distributed.tensor import DTensor, distribute_tensor

            params = [p for group in optimizer.param_groups for p in group["params"]]
            sharded = {}
            for index, entry in state["state"].items():
                param = params[int(index)]
                sharded[index] = {
                    key: distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                                           src_data_rank=None)  # every rank read the file: no communication
                    if isinstance(param, DTensor) and torch.is_tensor(value) and value.shape == param.shape
                    else value
                    for key, value in entry.items()}
            state = {**state, "state": sharded}
        optimizer.load_state_dict(state)

    def rng_states(self, own: dict) -> dict:
        """rank 0's RNG state at the top level (as one process saves it) plus every rank's, in rank order."""
        if not self.active:
            return own
        import torch.distributed as dist

        everyone: list = [None] * self.world_size
        dist.all_gather_object(everyone, own)
        return {**own, "ranks": everyone}

    def own_rng(self, saved: dict) -> tuple[dict, Optional[str]]:
        """This rank's RNG state from a checkpoint, and a note when it had to borrow rank 0's."""
        ranks = saved.get("ranks")
        if ranks and len(ranks) == self.world_size:
            return ranks[self.rank], None
        if self.active or ranks:
            return saved, (f"random state: the checkpoint holds the RNG of {len(ranks) if ranks else 1} process(es), "
                           f"this run has {self.world_size}; every rank continues from rank 0's (this matters for "
                           f"dropout only)")
        return saved, None


def _full(tree):
    """Replace every DTensor in a (nested) state dict by the whole tensor on CPU."""
    from torch.distributed.tensor import DTensor

    if isinstance(tree, DTensor):
        return tree.full_tensor().cpu()
    if isinstance(tree, dict):
        return {k: _full(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_full(v) for v in tree]
    return tree


def local_scalar(value: torch.Tensor) -> torch.Tensor:
    """A replicated DTensor (FSDP's gradient norm) as a plain tensor."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value
