"""Default training recipes per preset and device: the best settings measured, not copies of old defaults.

A recipe fills only the options the user left unset (None). The numbers behind each choice are in
bench/results/ and the README.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    # 150 s trials on the shared sample, vocab 2048 (bits/byte, lower is better): batch 64 x 128 at lr 4e-3 2.00,
    # 32 x 256 at 4e-3 2.12, 64 x 128 at 8e-3 1.82, 32 x 128 at 1.6e-2 1.66, 16 x 128 at 1.6e-2 1.49. Tiny models
    # want many small, bold steps; 128 tokens of context cost half the (head_dim 8) attention time of 256.
    ("260k", "cpu"): dict(per_device_train_batch_size=16, seq_len=128, learning_rate=1.6e-2, warmup_ratio=0.02,
                          torch_compile=False),
    ("15m", "cpu"): dict(per_device_train_batch_size=16, seq_len=256, learning_rate=2e-3, warmup_ratio=0.02,
                         torch_compile=False),
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

FALLBACK = dict(per_device_train_batch_size=16, seq_len=256, learning_rate=1e-3, warmup_ratio=0.02, torch_compile=False)


def recipe_for(preset: str, device_type: str) -> dict[str, Any]:
    return dict(RECIPES.get((preset, device_type), RECIPES.get((preset, "cpu"), FALLBACK)))
