"""Fault injection with real processes: SIGKILL at random moments and inside every phase of a checkpoint save,
SIGTERM / Ctrl-C, a second Ctrl-C, a stop that overruns its time limit, and no listening sockets.

Children are forked from a forkserver that has already imported torch, transformers and babyllama, so each of
the ~30 training processes starts in a fraction of a second instead of ~10 s on this shared machine.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_MODEL, TINY_TRAIN, optimizer_state_tensors

# Every step saves (save_steps=1), so a large share of the run is spent inside a save.
# Long enough that 23 kills (some up to 1.5 s after start) never let a quick machine reach the end first.
KILL_TRAIN = dict(TINY_TRAIN, per_device_train_batch_size=4, seq_len=32, max_steps=400, save_steps=1,
                  eval_steps=1000, save_total_limit=2, num_samples=0, logging_steps=1)
SAVE_PHASES = ["checkpoint.weights", "checkpoint.optimizer", "checkpoint.index", "checkpoint.rename",
               "checkpoint.renamed", "checkpoint.prune"]
RANDOM_KILLS = 16
PRELOAD = ["babyllama.train.loop", "babyllama.cli", "torch._dynamo", "transformers.models.llama.configuration_llama",
           "test_reliability_kill"]


# --------------------------------------------------------------------------- children (run in forked processes)


def _train_child(train: dict, model: dict, fault: tuple | None = None) -> None:
    torch.set_num_threads(1)  # deterministic and polite on a shared machine
    from babyllama.train import faults
    from babyllama.train.loop import pretrain

    faults.disarm()
    if fault:
        faults.arm(*fault)
    pretrain(train, model, log=lambda _: None)


def _cli_child(argv: list[str], fault: tuple | None = None) -> None:
    torch.set_num_threads(1)
    from babyllama import cli
    from babyllama.train import faults

    faults.disarm()
    if fault:
        faults.arm(*fault)
    cli.main(argv)


@pytest.fixture(scope="module")
def ctx():
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _start(ctx, target, *args):
    process = ctx.Process(target=target, args=args)
    process.start()
    return process


def _wait_for(predicate, timeout: float, process=None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if process is not None and not process.is_alive():
            return predicate()
        time.sleep(0.01)
    return False


# --------------------------------------------------------------------------- helpers


def _newest_step(run_dir: Path) -> int:
    from babyllama.train.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir)
    return int(found[-1].name.split("_")[1]) if found else -1


def _check_complete_checkpoint(run_dir: Path) -> int:
    """The newest good checkpoint loads completely (weights, optimizer, RNG, state); returns its step."""
    from babyllama.modelio import load_model
    from babyllama.train.checkpoint import latest_checkpoint, load_training_state

    latest = latest_checkpoint(run_dir, warn=lambda _: None)
    assert latest is not None
    model, _, _ = load_model(latest, need_tokenizer=False)
    state, optimizer, rng = load_training_state(latest)
    assert state["step"] == int(latest.name.split("_")[1])
    assert optimizer_state_tensors(optimizer) and "torch" in rng
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # a kill never leaves a torn metrics line
    return state["step"]


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def _cli_args(values: dict) -> list[str]:
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]


# --------------------------------------------------------------------------- kills


def test_sigkill_at_random_moments_and_inside_saves_resumes_exactly(ctx, prepared_512, tmp_path):
    rng = random.Random(1234)
    base = dict(KILL_TRAIN, data=str(prepared_512), output_dir=str(tmp_path))

    # Saves do not change the trajectory, so the reference skips them (and is quicker).
    reference = _start(ctx, _train_child, dict(base, run_name="reference", save_steps=1000), dict(TINY_MODEL))
    reference.join(300)
    assert reference.exitcode == 0

    run_dir = tmp_path / "killed"
    plan = [("phase", name) for name in SAVE_PHASES] + [("phase", "train.step")] + \
           [("random", i) for i in range(RANDOM_KILLS)]
    rng.shuffle(plan)
    kills, mid_save, resumed_from, resumes = 0, 0, [], 0
    for kind, what in plan:
        start_step = _newest_step(run_dir)
        fresh = start_step < 0
        resumes = 0 if fresh else resumes + 1
        train = dict(base, run_name="killed", overwrite_output_dir=True) if fresh else \
            dict(base, run_name="killed", resume_from_checkpoint=str(run_dir))
        fault = (what, "kill", rng.randint(1, 3)) if kind == "phase" else None
        child = _start(ctx, _train_child, train, dict(TINY_MODEL), fault)
        if kind == "random":
            if what % 4 == 0:  # any moment at all, setup included
                time.sleep(rng.uniform(0.0, 1.5))
            else:  # a random moment after training made progress (so most land in or around a save)
                _wait_for(lambda: _newest_step(run_dir) > start_step, 60, child)
                time.sleep(rng.uniform(0.0, 0.15))
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
        child.join(120)
        assert child.exitcode == -signal.SIGKILL, f"{kind} {what}: exit {child.exitcode}"
        kills += 1
        leftovers = list((run_dir / "checkpoints").glob(".*")) if (run_dir / "checkpoints").is_dir() else []
        mid_save += bool(leftovers)
        if _newest_step(run_dir) >= 0:
            resumed_from.append(_check_complete_checkpoint(run_dir))

    final = _start(ctx, _train_child, dict(base, run_name="killed", resume_from_checkpoint=str(run_dir)),
                   dict(TINY_MODEL))
    final.join(300)
    assert final.exitcode == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["step"] == KILL_TRAIN["max_steps"]
    # Each restart after the last fresh start resumed (one killed during its setup may not have recorded it yet).
    assert resumes // 2 < len(manifest["resumed"]) <= resumes + 1
    print(f"\n{kills} SIGKILLs ({len(SAVE_PHASES)} inside save phases, {RANDOM_KILLS} at random moments), "
          f"{mid_save} left a half-written save behind; resumed from steps {resumed_from}")
    assert kills >= 20 and mid_save >= len(SAVE_PHASES) - 2

    expected, got = _weights(tmp_path / "reference"), _weights(run_dir)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs from the uninterrupted run"


# --------------------------------------------------------------------------- graceful stops


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net") / table
        if path.is_file():
            for line in path.read_text().splitlines()[1:]:
                parts = line.split()
                # TCP state 0A is LISTEN; an unconnected UDP socket bound to a port (state 07) also receives.
                if parts[3] in ("0A", "07"):
                    inodes.add(parts[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


@pytest.mark.parametrize("signame,status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_and_ctrl_c_checkpoint_and_exit_with_documented_status(ctx, prepared_512, tmp_path, signame, status):
    run_dir = tmp_path / "stopped"
    train = dict(KILL_TRAIN, data=str(prepared_512), output_dir=str(tmp_path), run_name="stopped", max_steps=500,
                 save_steps=1000)
    child = _start(ctx, _cli_child, ["pretrain", *_cli_args({**train, **TINY_MODEL})])
    assert _wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size,
                     120, child)
    # While it trains: nothing of this process listens on a network port.
    assert not _socket_inodes(child.pid) & _listening_inodes()
    os.kill(child.pid, getattr(signal, signame))
    child.join(60)
    assert child.exitcode == status
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert _newest_step(run_dir) == manifest["step"] > 0  # the checkpoint of the step it stopped at
    assert _check_complete_checkpoint(run_dir) == manifest["step"]


def test_second_ctrl_c_stops_at_once(ctx, prepared_512, tmp_path):
    run_dir = tmp_path / "twice"
    train = dict(KILL_TRAIN, data=str(prepared_512), output_dir=str(tmp_path), run_name="twice", max_steps=500,
                 save_steps=2)
    # Each step sleeps 2 s, so "at once" (well under a step) is easy to tell from "after the step".
    child = _start(ctx, _cli_child, ["pretrain", *_cli_args({**train, **TINY_MODEL})], ("train.step", "sleep", None, 2.0))
    assert _wait_for(lambda: _newest_step(run_dir) >= 2, 120, child)
    time.sleep(0.3)  # inside the sleeping step 3
    os.kill(child.pid, signal.SIGINT)
    time.sleep(0.2)
    sent = time.time()
    os.kill(child.pid, signal.SIGINT)
    child.join(30)
    assert time.time() - sent < 1.5
    assert child.exitcode == 130
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert _newest_step(run_dir) == 2  # no checkpoint of the unfinished step; step 2 stays complete
    _check_complete_checkpoint(run_dir)


def test_stop_is_bounded_by_stop_timeout(ctx, prepared_512, tmp_path):
    run_dir = tmp_path / "slow"
    train = dict(KILL_TRAIN, data=str(prepared_512), output_dir=str(tmp_path), run_name="slow", max_steps=500,
                 save_steps=1, stop_timeout=0.5)
    child = _start(ctx, _cli_child, ["pretrain", *_cli_args({**train, **TINY_MODEL})], ("train.step", "sleep", None, 4.0))
    assert _wait_for(lambda: _newest_step(run_dir) >= 1, 120, child)
    time.sleep(0.2)
    sent = time.time()
    os.kill(child.pid, signal.SIGTERM)
    child.join(30)
    assert time.time() - sent < 2.5  # the step alone would take 4 s more
    assert child.exitcode == 143
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and "stop_timeout" in manifest["error"]
    _check_complete_checkpoint(run_dir)
