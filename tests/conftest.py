"""Shared fixtures: the real data in ../shared/data, a prepared vocab-512 corpus and a tiny trained run.

Session-scoped, so the whole suite prepares and pretrains once. Tests that need their own run use
`pretrain_tiny`, which trains the same tiny shape for a few steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BABYLLAMA_TEST_DATA", REPO.parent / "shared" / "data"))

# A model small enough to train in seconds on 2 cores, with grouped-query attention and tied embeddings.
TINY_MODEL = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128)
TINY_TRAIN = dict(per_device_train_batch_size=8, seq_len=64, learning_rate=3e-3, warmup_steps=5, logging_steps=5,
                  eval_max_tokens=4096, num_samples=1, sample_max_new_tokens=16, disable_tqdm=True,
                  torch_compile=False, bf16=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "tinystories" / "train.txt").is_file():
        pytest.fail(f"the shared test data is missing at {DATA}; set BABYLLAMA_TEST_DATA")
    return DATA


@pytest.fixture(scope="session")
def tinystories(data_dir) -> Path:
    return data_dir / "tinystories"


@pytest.fixture(scope="session")
def prepared_512(tinystories, tmp_path_factory) -> Path:
    """TinyStories sample -> byte-level BPE 512 -> shards."""
    from babyllama.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("data") / "ts-512"
    prepare(PrepareConfig(data=str(tinystories), vocab_size=512, out=str(out), disable_tqdm=True), log=lambda _: None)
    return out


def optimizer_state_tensors(state: dict) -> list:
    """Every floating-point tensor of a saved optimizer state: AdamW's, or Muon's pair {'adamw': ..., 'muon': ...}."""
    import torch

    parts = [state] if "state" in state else [state[name] for name in ("adamw", "muon") if name in state]
    return [v for part in parts for entry in part["state"].values() for v in entry.values()
            if torch.is_tensor(v) and v.is_floating_point()]


def pretrain_tiny(data: Path, output_dir: Path, run_name: str, **overrides) -> Path:
    """Train the tiny model; overrides may hold training or model fields."""
    from babyllama.config import ModelConfig, field_names
    from babyllama.train.loop import pretrain

    model_fields = field_names(ModelConfig)
    train = {**TINY_TRAIN, "data": str(data), "output_dir": str(output_dir), "run_name": run_name, "max_steps": 20}
    model = dict(TINY_MODEL)
    for key, value in overrides.items():
        (model if key in model_fields else train)[key] = value
    return pretrain(train, model, log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_run(prepared_512, tmp_path_factory) -> Path:
    """A finished tiny pretraining run folder (model/, checkpoints/, manifest.json, metrics.jsonl)."""
    return pretrain_tiny(prepared_512, tmp_path_factory.mktemp("runs"), "tiny", max_steps=40)


def resume_matches_whole(whole: Path, step: int, tmp_path: Path) -> bool:
    """Simulate a run that stopped after `step` (its folder holds only what existed then), resume it, and say
    whether it ends with weights bit-identical to the run that never stopped."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from babyllama.train.loop import pretrain

    part = tmp_path / f"{whole.name}-stopped"
    part.mkdir()
    shutil.copytree(whole / "checkpoints" / f"step_{step:06d}", part / "checkpoints" / f"step_{step:06d}")
    shutil.copytree(whole / "tokenizer", part / "tokenizer")
    resumed = pretrain({"resume_from_checkpoint": str(part), "disable_tqdm": True}, {}, log=lambda _: None)
    a = load_file(str(whole / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
