"""Default training recipes per preset and device: the best settings measured, not copies of old defaults.

A recipe fills only the options the user left unset (None), and chooses the optimizer unless --optim is given
(and not under --fsdp, which Muon does not support). A Muon recipe's learning_rate is its AdamW part's;
adamw_alone_learning_rate, where given, replaces it when AdamW trains every weight (--optim adamw, --fsdp). The
numbers behind each choice are in bench/results/ and the README. Recipes are kept per device family
(train/device.py: device_family): cpu, mps, and
CUDA cards by what they compute natively: cuda-bf16 (8.0+, A100/H100/H200, measured on an H200), cuda-fp16 (7.x: T4,
V100; 15-16 GB on Colab's T4, so the batch is halved) and cuda-fp32 (older cards: no Triton, so no torch.compile).
The T4/V100 and MPS recipes were derived, not measured.
"""

from __future__ import annotations

from typing import Any, Union

import torch

from babyllama.train.device import device_family

RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    # 150 s trials on the shared sample, vocab 2048 (bits/byte, lower is better): batch 64 x 128 at lr 4e-3 2.00,
    # 32 x 256 at 4e-3 2.12, 64 x 128 at 8e-3 1.82, 32 x 128 at 1.6e-2 1.66, 16 x 128 at 1.6e-2 1.49. Tiny models
    # want many small, bold steps; 128 tokens of context cost half the (head_dim 8) attention time of 256.
    # Muon, 600 s (bench/results/quality-260k-600s-*.json), seed 42: AdamW 1.0743 and 1.0841 (two runs), Muon
    # 1.0628; seed 1337: AdamW 1.1155, Muon 1.0664. Muon's own rate: 3.2e-2 1.0865, 8e-3 1.0530 (seed 42) and
    # 1.0526 (seed 1337); 1.0488 after the faster Muon step. AdamW keeps the embeddings, the head and the norms at
    # 1.6e-2 (8e-3 1.0718, 3.2e-2 1.0675). Batch 32 x 128 instead of 16 x 128: 1.0482 vs 1.0488 (seed 42), 1.0411
    # vs 1.0466 (seed 1337), with 1.1x the tokens/s; 8 x 256 lost (1.0969).
    # At batch 32 x 128 (Dec 1): Muon 1.2e-2, the AdamW part at 2.4e-2, --init_std 0.05 and --seq_len_warmup_ratio
    # 0.3 / 0.6 all lost or tied against the defaults (bench/README.md).
    # z-loss 1e-4 (PaLM's), equal steps (1,700; same step cost): 1.0269 vs 1.0300 (seed 42), 1.0216 vs 1.0303
    # (seed 1337); 600 s back to back, a tie (1.0234 vs 1.0222 off). Measured at 260k only: other recipes leave it off.
    ("260k", "cpu"): dict(per_device_train_batch_size=32, seq_len=128, learning_rate=1.6e-2, warmup_ratio=0.02,
                          torch_compile=False, optim="muon", muon_learning_rate=8e-3, z_loss=1e-4),
    # --optim muon, 600 s, vocab 4096 (bench/results/quality-15m-600s-*.json): AdamW 1.4384 bits/byte
    # (221 steps), Muon at 2e-3 1.3186 (159 steps), at 4e-3 1.2572 (170), at 8e-3 1.2297 (178; one seed).
    # A Muon step costs 1.3-1.4x an AdamW step here (fp32 Newton-Schulz). AdamW alone, swept down: 8e-3 1.7731,
    # 4e-3 1.5378, 2e-3 1.3279, 1e-3 1.2603. Muon's AdamW part (embeddings, head, norms) at equal steps (230, seed
    # 42): 2e-3 1.1568, 4e-3 1.1309, 8e-3 1.1110, 1.6e-2 1.0943 -- the 260k value; seed 1337: 1.1666 vs 1.1018.
    ("15m", "cpu"): dict(per_device_train_batch_size=16, seq_len=256, learning_rate=1.6e-2, warmup_ratio=0.02,
                         torch_compile=False, optim="muon", muon_learning_rate=8e-3, adamw_alone_learning_rate=1e-3),
    ("42m", "cpu"): dict(per_device_train_batch_size=8, seq_len=256, learning_rate=1e-3, warmup_ratio=0.02,
                         torch_compile=False),
    ("110m", "cpu"): dict(per_device_train_batch_size=4, seq_len=256, learning_rate=6e-4, warmup_ratio=0.02,
                          torch_compile=False),
    ("260k", "cuda"): dict(per_device_train_batch_size=128, seq_len=512, learning_rate=4e-3, warmup_ratio=0.02,
                           torch_compile=True),
    ("15m", "cuda"): dict(per_device_train_batch_size=128, seq_len=256, learning_rate=2e-3, warmup_ratio=0.02,
                          torch_compile=True),
    ("42m", "cuda"): dict(per_device_train_batch_size=32, seq_len=1024, learning_rate=1e-3, warmup_ratio=0.02,
                          torch_compile=True),
    ("110m", "cuda"): dict(per_device_train_batch_size=16, seq_len=1024, learning_rate=6e-4, warmup_ratio=0.02,
                           torch_compile=True),
}


def _scaled(family: str, source: str, batch_factor: float, **changes) -> dict:
    """Another family's recipes with the batch scaled (at least 4) and some settings changed."""
    out = {}
    for (preset, fam), recipe in RECIPES.items():
        if fam == source:
            batch = max(4, int(recipe["per_device_train_batch_size"] * batch_factor))
            out[(preset, family)] = {**recipe, "per_device_train_batch_size": batch, **changes}
    return out


# Measured recipes are the "cuda" ones (an H200); 8.0+ cards share them.
RECIPES.update({(preset, "cuda-bf16"): dict(recipe) for (preset, fam), recipe in list(RECIPES.items()) if fam == "cuda"})
# 7.x (T4 16 GB, V100 16/32 GB): fp16 with loss scaling; compile works with fp16 there. Half the batch: about 1/4 of an
# H200's memory and far less speed, so smaller steps lose nothing.
RECIPES.update(_scaled("cuda-fp16", "cuda", 0.5, torch_compile=True))
# Pre-7.0 cards: fp32 and eager (Triton needs 7.0+).
RECIPES.update(_scaled("cuda-fp32", "cuda", 0.25, torch_compile=False))
# Apple GPUs: fp32, eager (Inductor's Metal backend is a prototype); unified memory is shared with the system, so a
# quarter of the H200 batch. Not run on a Mac.
RECIPES.update(_scaled("mps", "cuda", 0.25, torch_compile=False))

# Recipe-filled options added after runs existed: the value a recipe that does not name them trains with, and the one
# a checkpoint from before the option was trained with (so it resumes exactly).
BEFORE_THE_OPTION: dict[str, Any] = dict(z_loss=0.0)

FALLBACK = dict(per_device_train_batch_size=16, seq_len=256, learning_rate=1e-3, warmup_ratio=0.02, torch_compile=False)


def recipe_for(preset: str, device: Union[str, torch.device]) -> dict[str, Any]:
    """The recipe for a preset on a device: a torch.device or a type ("cuda" means the current CUDA card)."""
    family = device_family(torch.device(device)) if str(device).startswith("cuda") else torch.device(device).type
    return dict(RECIPES.get((preset, family), RECIPES.get((preset, "cpu"), FALLBACK)))
