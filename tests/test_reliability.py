"""Numerical faults, full disks and damaged checkpoints, injected into tiny in-process runs."""

from __future__ import annotations

import errno
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from babyllama.errors import BabyLlamaError
from babyllama.model import Llama
from babyllama.train import checkpoint as ckpt
from conftest import optimizer_state_tensors, pretrain_tiny

FAST = dict(per_device_train_batch_size=4, seq_len=32, eval_steps=1000, num_samples=0, logging_steps=1)


def _all_finite(folder: Path) -> bool:
    from babyllama.modelio import load_model

    model = load_model(folder, need_tokenizer=False)[0]
    _, optimizer, _ = ckpt.load_training_state(folder)
    tensors = list(model.parameters()) + optimizer_state_tensors(optimizer)
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss with an exploding gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _inject(monkeypatch, faults_at: dict[int, str]):
    """Make the training forward pass at call n (0-based) return a NaN loss or a loss with an Inf gradient."""
    original, calls = Llama.forward, {"n": 0}

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not self.training:
            return out
        kind = faults_at.get(calls["n"])
        calls["n"] += 1
        if kind == "nan":
            return out * float("nan")
        if kind == "inf_grad":
            return _InfGrad.apply(out)
        return out

    monkeypatch.setattr(Llama, "forward", forward)


def test_nonfinite_steps_are_skipped_and_counted(prepared_512, tmp_path, monkeypatch):
    _inject(monkeypatch, {2: "nan", 3: "inf_grad", 5: "nan"})
    run = pretrain_tiny(prepared_512, tmp_path, "nan", max_steps=7, save_steps=2, **FAST)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["skipped_steps"] == 3
    assert _metrics(run)[-2]["skipped_steps"] == 3  # last logged training step (the final line is the eval)
    for folder in ckpt.list_checkpoints(run):
        assert _all_finite(folder)


def test_too_many_nonfinite_steps_in_a_row_stop_with_a_clear_message(prepared_512, tmp_path, monkeypatch):
    _inject(monkeypatch, {i: "nan" for i in range(3, 100)})
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path, "nans", max_steps=30, save_steps=1, max_consecutive_nonfinite=4, **FAST)
    message = str(err.value)
    assert "stopping at step 7: 4 steps in a row had a NaN/Inf loss or gradient" in message  # steps 4..7 of the log
    assert "--max_consecutive_nonfinite 4" in message and "--resume_from_checkpoint" in message
    run = tmp_path / "nans"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["skipped_steps"] == 4
    checkpoints = ckpt.list_checkpoints(run)
    assert checkpoints and all(_all_finite(c) for c in checkpoints)


def test_nan_weights_are_never_checkpointed(prepared_512, tmp_path, monkeypatch):
    """An update that itself produces NaN weights (finite loss and gradient) is caught at the save."""
    import babyllama.train.loop as loop

    build = loop.build_optimizer

    def poisoned(*args, **kwargs):
        optimizer = build(*args, **kwargs)
        step, count = optimizer.step, {"n": 0}

        def step_then_poison(*a, **k):
            out = step(*a, **k)
            count["n"] += 1
            if count["n"] == 3:
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0][0, 0] = float("nan")
            return out

        optimizer.step = step_then_poison
        return optimizer

    monkeypatch.setattr(loop, "build_optimizer", poisoned)
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path, "poisoned", max_steps=5, save_steps=1, **FAST)
    message = str(err.value)
    assert "refusing to write checkpoint step_000003" in message and "NaN or Inf" in message
    run = tmp_path / "poisoned"
    assert "last good checkpoint is" in message and "step_000002" in message
    assert [c.name for c in ckpt.list_checkpoints(run)] == ["step_000001", "step_000002"]
    assert all(_all_finite(c) for c in ckpt.list_checkpoints(run))
    assert not list((run / "checkpoints").glob(".*"))


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(prepared_512, tmp_path, monkeypatch):
    real_save, calls = torch.save, {"n": 0}

    def save_until_full(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # step 3's optimizer.pt (each checkpoint calls torch.save twice)
            with open(path, "wb") as handle:
                handle.write(b"\0" * 1000)  # a partly written file, as a real full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path, "full", max_steps=5, save_steps=1, **FAST)
    run = tmp_path / "full"
    message = str(err.value)
    assert f"could not write checkpoint {run / 'checkpoints' / 'step_000003'}: No space left on device" in message
    assert "The previous checkpoint (step_000002) is intact" in message and "--resume_from_checkpoint" in message
    assert [c.name for c in ckpt.list_checkpoints(run)] == ["step_000001", "step_000002"]
    assert ckpt.verify_checkpoint(run / "checkpoints" / "step_000002") is None
    assert not list((run / "checkpoints").glob(".*"))  # the half-written staging folder is gone
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    # ... and the run resumes from it once there is room again.
    monkeypatch.setattr(torch, "save", real_save)
    pretrain_tiny(prepared_512, tmp_path, "full", max_steps=5, save_steps=1, resume_from_checkpoint=str(run), **FAST)
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"


def test_preflight_refuses_a_disk_without_room_before_writing_anything(prepared_512, tmp_path, monkeypatch):
    import babyllama.train.resources as resources

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda _: usage(10 << 20, 10 << 20, 100_000))
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path / "runs", "tight", max_steps=10, save_steps=1, save_total_limit=3, **FAST)
    message = str(err.value)
    assert message.startswith(f"not enough free disk space in {tmp_path / 'runs' / 'tight'}: 97.7 KB free, but 3 "
                              f"checkpoint(s) of ")
    assert "--save_total_limit" in message
    assert not (tmp_path / "runs" / "tight").exists()


def test_preflight_refuses_an_output_folder_it_cannot_write(prepared_512, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, blocker / "runs", "x", max_steps=2, **FAST)
    assert str(err.value) == (f"cannot write to the output folder {blocker / 'runs'}: Not a directory; "
                              f"choose another --output_dir")
    assert blocker.read_text() == "not a folder"


@pytest.fixture(scope="module")
def small_run(prepared_512, tmp_path_factory) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4 (cheaper than the shared 40-step tiny_run)."""
    return pretrain_tiny(prepared_512, tmp_path_factory.mktemp("runs"), "small", max_steps=4, save_steps=2, **FAST)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(small_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(small_run, run)
    checkpoints = ckpt.list_checkpoints(run)
    assert len(checkpoints) == 2
    previous, newest = checkpoints
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit-pattern, same size
    weights.write_bytes(bytes(data))
    warnings = []
    assert ckpt.latest_checkpoint(run, warn=warnings.append) == previous
    assert warnings == [f"skipping damaged checkpoint {newest}: model.safetensors fails its checksum; "
                        f"falling back to the previous one"]
    with pytest.raises(BabyLlamaError, match="is damaged: model.safetensors fails its checksum"):
        ckpt.resolve_checkpoint(newest)
    (previous / "optimizer.pt").write_bytes(b"")  # damaged too: nothing left to resume from
    with pytest.warns(UserWarning), pytest.raises(BabyLlamaError, match="holds no complete checkpoint"):
        ckpt.resolve_checkpoint(run)


@pytest.mark.parametrize("damage,problem", [
    (lambda f: (f / "checkpoint.json").unlink(), "no checkpoint.json (incomplete)"),
    (lambda f: (f / "checkpoint.json").write_text("{not json"), "checkpoint.json is unreadable"),
    (lambda f: (f / "checkpoint.json").write_text('{"files": {}}'), "checkpoint.json does not list config.json"),
    (lambda f: (f / "rng.pt").unlink(), "rng.pt is missing"),
    (lambda f: (f / "trainer_state.json").write_text("{}"), "trainer_state.json has 2 bytes, expected"),
])
def test_verify_names_each_kind_of_damage(small_run, tmp_path, damage, problem):
    folder = tmp_path / "step"
    shutil.copytree(ckpt.list_checkpoints(small_run)[-1], folder)
    assert ckpt.verify_checkpoint(folder) is None
    damage(folder)
    assert ckpt.verify_checkpoint(folder).startswith(problem)


def test_checkpoints_are_ordered_and_pruned_by_step_number(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (999_998, 999_999, 1_000_000):
        (root / ckpt.checkpoint_name(step)).mkdir(parents=True)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)][-1] == "step_1000000"
    ckpt.prune_checkpoints(tmp_path, keep=1)
    assert [p.name for p in root.iterdir()] == ["step_1000000"]


@pytest.mark.parametrize("on_device", [True, False])
def test_nonfinite_guard_skips_updates_with_or_without_a_host_decision(on_device):
    """The device decision (fused AdamW's found_inf) and the host decision skip exactly the same updates, and a
    streak that ended before the check still stops the run."""
    from babyllama.train.nonfinite import NonFiniteGuard

    param = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.AdamW([param], lr=0.1, fused=True)
    guard = NonFiniteGuard(optimizer, torch.device("cpu"), max_in_a_row=2, resume_hint="runs/x", on_device=on_device)
    assert guard.due(1) is not on_device and guard.due(2)  # deferred checks come at least every max_in_a_row steps
    messages = []

    def step(loss: float, grad: float) -> bool:
        param.grad = torch.full((4,), grad)
        return bool(guard.step(torch.tensor(loss), param.grad.norm(), optimizer.step))

    assert step(1.0, 1.0)
    after_one = param.detach().clone()
    assert not step(float("nan"), 1.0) and not step(1.0, float("inf"))
    assert torch.equal(param.detach(), after_one) and int(optimizer.state[param]["step"]) == 1
    assert step(1.0, 1.0) and int(optimizer.state[param]["step"]) == 2 and param.grad is None
    with pytest.raises(BabyLlamaError, match="stopping at step 4: 2 steps in a row"):
        guard.check(4, messages.append)
    assert guard.skipped == 2 and messages == ["by step 4: 2 steps with a non-finite loss or gradient; update "
                                               "skipped (2 so far)"]
    assert not step(float("nan"), 1.0)
    guard.check(5, messages.append)  # one skip is not a streak of two
    assert guard.skipped == 3 and len(messages) == 2
    guard.check(6, messages.append)  # nothing new: silent
    assert len(messages) == 2 and guard.flush() == 3


def test_fp16_grad_scaler_overflow_is_left_to_the_scaler():
    """With a GradScaler an overflowing gradient is routine: the scaler skips that update and lowers its scale, the
    guard counts nothing, and the next step runs (unscale_ needs the scaler's update() after every step)."""
    from babyllama.train.nonfinite import NonFiniteGuard

    param = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    guard = NonFiniteGuard(optimizer, torch.device("cpu"), max_in_a_row=2, resume_hint="runs/x", scaler=scaler)

    def update():
        scaler.step(optimizer)
        scaler.update()

    for grad in (float("inf"), 1.0):
        scaler.scale(torch.tensor(1.0))  # as the loop scales the loss before backward
        param.grad = torch.full((4,), grad)
        scaler.unscale_(optimizer)
        assert bool(guard.step(torch.tensor(1.0), param.grad.norm(), update))
    assert scaler.get_scale() == 2.0 ** 7 and int(optimizer.state[param]["step"]) == 1
    guard.check(2, print)
    assert guard.skipped == 0
