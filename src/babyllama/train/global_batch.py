"""Resuming on another number of processes: the batch options that keep a run's global batch (and so its data
order and schedule) unchanged."""

from __future__ import annotations

from typing import Optional

from babyllama.errors import BabyLlamaError

# The two options that make up the global batch together with the world size.
BATCH_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps")


def fit_global_batch(saved_train: dict, train_values: dict, saved_world: int, world: int) -> tuple[dict, Optional[str]]:
    """Batch options that keep the saved global batch on `world` processes, and a note of what changed.

    A step is a global batch: keeping it fixed keeps the data order, the schedule and the meaning of every
    saved step, so the run continues as it would have (up to the order of floating-point sums).
    """
    micro = train_values.get(BATCH_KEYS[0], saved_train[BATCH_KEYS[0]])
    saved_micro, saved_accumulation = saved_train[BATCH_KEYS[0]], saved_train[BATCH_KEYS[1]]
    target = saved_micro * saved_accumulation * saved_world
    if BATCH_KEYS[1] in train_values:
        accumulation = train_values[BATCH_KEYS[1]]
        if micro * accumulation * world != target:
            raise BabyLlamaError(
                f"cannot resume with a different global batch: it was {saved_micro} x {saved_accumulation} "
                f"accumulation x {saved_world} process(es) = {target} sequences, now {micro} x {accumulation} x "
                f"{world} = {micro * accumulation * world}. Keep per_device_train_batch_size x "
                f"gradient_accumulation_steps x processes = {target}, or start a new run with --init_from")
    else:
        if target % (micro * world):
            raise BabyLlamaError(
                f"cannot keep the global batch of {target} sequences on {world} process(es) with a micro-batch of "
                f"{micro}: {target} is not a multiple of {micro * world}. Pass --per_device_train_batch_size and "
                f"--gradient_accumulation_steps whose product times {world} is {target}")
        accumulation = target // (micro * world)
    values = {BATCH_KEYS[0]: micro, BATCH_KEYS[1]: accumulation}
    if (micro, accumulation, world) == (saved_micro, saved_accumulation, saved_world):
        return values, None
    changes = [f"{name} {before} -> {after}" for name, before, after in
               (("processes", saved_world, world), ("per_device_train_batch_size", saved_micro, micro),
                ("gradient_accumulation_steps", saved_accumulation, accumulation)) if before != after]
    return values, (f"resuming with {', '.join(changes)}: the global batch stays {target} sequences "
                    f"({micro} x {accumulation} accumulation x {world}), so the data order and the schedule are "
                    f"unchanged; sums run in another order, so losses agree to rounding, not bit for bit")
