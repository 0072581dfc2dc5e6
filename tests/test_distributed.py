"""Pretraining on several processes (CPU, gloo): the same run as one process, stops together, resumes exactly.

One 2-process DDP run (launched by `babyllama pretrain --nproc_per_node 2`, which execs torchrun) is the
reference; the other tests compare against it. Processes are few because each one costs seconds of imports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL, pretrain_tiny

from babyllama.errors import BabyLlamaError
from babyllama.train.distributed import Distributed
from babyllama.train.global_batch import fit_global_batch
from babyllama.train.launch import torchrun_argv

STEPS = 12
# Same seed, same global batch of 8: 2 processes x 4 and 1 process x 8 differ only in the order of floating-point
# sums. Measured: at most 9.5e-7 apart in loss over 10-12 steps (fp32, tiny model); the bound leaves 10x room.
TOLERANCE = 1e-5
SETTINGS = dict(seq_len=64, learning_rate=3e-3, warmup_steps=2, lr_scheduler_type="constant_with_warmup",
                logging_steps=1, eval_steps=1000, save_steps=4, save_total_limit=None, eval_max_tokens=1024,
                num_samples=1, sample_max_new_tokens=4, disable_tqdm=True, torch_compile=False, bf16=False,
                device="cpu")


def _flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        out += [f"--{key}", "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def _command(data: Path, output_dir: Path, run_name: str, **overrides) -> list[str]:
    values = {**SETTINGS, **TINY_MODEL, "data": data, "output_dir": output_dir, "run_name": run_name,
              "max_steps": STEPS, "per_device_train_batch_size": 4, **overrides}
    return [sys.executable, "-m", "babyllama", "pretrain", *_flags(values)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _spawn_ranks(command: list[str], log_dir: Path, world: int = 2) -> list[subprocess.Popen]:
    """What torchrun does, by hand, so the test knows each rank's process."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port)
        out = open(log_dir / f"rank{rank}.log", "w")
        procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 240) -> list[int]:
    deadline = time.time() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1, deadline - time.time())))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("the ranks did not finish (a collective waiting forever?)")
    return codes


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in _metrics(run_dir) if "loss" in m}


@pytest.fixture(scope="module")
def ddp_run(prepared_512, tmp_path_factory):
    """2 processes x micro-batch 4, 12 steps, checkpoints every 4, through `babyllama pretrain --nproc_per_node 2`."""
    out = tmp_path_factory.mktemp("ddp")
    done = subprocess.run(_command(prepared_512, out, "ddp") + ["--nproc_per_node", "2"], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / "ddp", done.stdout + done.stderr


def test_two_processes_follow_one_process_loss_curve(ddp_run, prepared_512, tmp_path):
    run_dir, output = ddp_run
    assert "batch 4 x 1 accumulation x 2 processes = 8 sequences" in output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["distributed"]["world_size"] == 2
    assert manifest["distributed"]["backend"] == "gloo"
    # Rank 0 alone writes: one metrics line per step, one final evaluation, one sample section.
    steps = [m["step"] for m in _metrics(run_dir) if "loss" in m]
    assert steps == list(range(1, STEPS + 1))
    assert (run_dir / "samples.md").read_text().count("## step") == 1
    assert [p.name for p in sorted((run_dir / "checkpoints").iterdir())] == \
        ["step_000004", "step_000008", "step_000012"]

    single = pretrain_tiny(prepared_512, tmp_path, "one", **{**SETTINGS, "max_steps": STEPS,
                                                              "per_device_train_batch_size": 8})
    two, one = _losses(run_dir), _losses(single)
    assert two.keys() == one.keys()
    worst = max(abs(two[s] - one[s]) for s in one)
    print(f"2 x 4 vs 1 x 8: largest loss difference over {STEPS} steps = {worst:.3g}")
    assert worst < TOLERANCE
    assert one[STEPS] < one[1] - 0.3  # it learned something, so equal curves mean equal training


def test_resume_on_one_process_keeps_global_batch(ddp_run, tmp_path, capsys):
    from babyllama.train.loop import pretrain

    run_dir = Path(shutil.copytree(ddp_run[0], tmp_path / "ddp"))
    shutil.rmtree(run_dir / "checkpoints" / "step_000012")
    shutil.rmtree(run_dir / "checkpoints" / "step_000008")
    notes: list[str] = []
    pretrain({"resume_from_checkpoint": str(run_dir), "disable_tqdm": True}, {}, log=notes.append)
    said = "\n".join(notes)
    assert "resuming with processes 2 -> 1, gradient_accumulation_steps 1 -> 2" in said
    assert "global batch stays 8 sequences" in said
    resumed, reference = _losses(run_dir), _losses(ddp_run[0])
    worst = max(abs(resumed[s] - reference[s]) for s in range(5, STEPS + 1))
    print(f"2-process checkpoint resumed on 1 process: largest loss difference, steps 5-{STEPS} = {worst:.3g}")
    assert worst < TOLERANCE


def test_sigterm_on_one_rank_stops_every_rank_and_resume_is_exact(ddp_run, prepared_512, tmp_path):
    reference = _losses(ddp_run[0])
    # A long run, so the signal surely arrives mid-run; the constant schedule makes its steps equal the reference's.
    procs = _spawn_ranks(_command(prepared_512, tmp_path, "killed", max_steps=1000), tmp_path)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 180
    while not (metrics.is_file() and metrics.read_text().count('"loss"') >= 2):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "the run did not start training"
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)  # rank 1 only: rank 0 must hear of it through the per-step agreement
    assert _wait(procs) == [143, 143]
    run_dir = tmp_path / "killed"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stopped = manifest["step"]
    assert manifest["status"] == "interrupted"
    assert "a stop request on another process received" in (tmp_path / "rank0.log").read_text()
    assert (run_dir / "checkpoints" / f"step_{stopped:06d}").is_dir()
    assert stopped < STEPS - 1, f"stopped at step {stopped}: too late to compare with the {STEPS}-step reference"
    print(f"SIGTERM to rank 1: both ranks checkpointed at step {stopped} and exited with 143")

    procs = _spawn_ranks(_command(prepared_512, tmp_path, "killed", max_steps=STEPS,
                                  resume_from_checkpoint=run_dir), tmp_path)
    assert _wait(procs) == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:]
    resumed = _losses(run_dir)
    # Same processes, same arithmetic: bit for bit, before and after the interruption.
    assert {s: resumed[s] for s in range(1, STEPS + 1)} == {s: reference[s] for s in range(1, STEPS + 1)}


@pytest.mark.slow
def test_fsdp_two_processes_match_and_export_one_model(prepared_512, tmp_path):
    """--fsdp true: sharded training (with accumulation), whole checkpoints, one Hugging Face model. FSDP trains
    with AdamW (Muon, the 260k CPU default, needs whole matrices), so the reference is one AdamW process."""
    steps = 8
    procs = _spawn_ranks(_command(prepared_512, tmp_path, "fsdp", fsdp=True, max_steps=steps,
                                  per_device_train_batch_size=2, gradient_accumulation_steps=2), tmp_path)
    assert _wait(procs) == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:]
    run_dir = tmp_path / "fsdp"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["distributed"]["fsdp"] is True and manifest["config"]["train"]["optim"] == "adamw"
    single = pretrain_tiny(prepared_512, tmp_path, "one", **{**SETTINGS, "max_steps": steps, "optim": "adamw",
                                                              "per_device_train_batch_size": 8})
    fsdp, reference = _losses(run_dir), _losses(single)
    worst = max(abs(fsdp[s] - reference[s]) for s in range(1, steps + 1))
    print(f"FSDP 2 x 2 x 2 accumulation vs 1 x 8: largest loss difference over {steps} steps = {worst:.3g}")
    assert worst < TOLERANCE

    from transformers import LlamaForCausalLM

    from babyllama.modelio import load_model

    ours = load_model(run_dir / "model")[0]
    same_step = load_model(single / "model")[0]
    for name, weight in ours.state_dict().items():
        assert torch.allclose(weight, same_step.state_dict()[name], atol=1e-5), name
    hf = LlamaForCausalLM.from_pretrained(run_dir / "model")
    ids = torch.tensor([[1, 70, 80, 90, 100]])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, ours(ids), atol=1e-5)


@pytest.mark.slow
def test_sft_under_accelerate_launch_on_two_cpu_processes(ddp_run, data_dir, tmp_path):
    """`accelerate launch` (its torchrun-based launcher) runs `babyllama sft` as one 2-process run.

    On CPU, accelerate needs --use_cpu true (or ACCELERATE_USE_CPU=true) to form a gloo group: its --cpu flag
    alone starts a single process.
    """
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(_free_port()), "-m", "babyllama", "sft", "--model", str(ddp_run[0]), "--data",
               str(data_dir / "instruct" / "instructions.jsonl"), "--max_examples", "32", "--eval_size", "0",
               "--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--output_dir",
               str(tmp_path), "--run_name", "sft", "--disable_tqdm", "true", "--use_cpu", "true"]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["sft"]  # one run folder, not one per process
    logged = [m for m in _metrics(tmp_path / "sft") if "loss" in m]
    # 32 examples, 4 per process and step: with 2 processes each step is a quarter of the data.
    assert [m["step"] for m in logged] == [1, 2] and logged[-1]["epoch"] == pytest.approx(0.5)
    assert json.loads((tmp_path / "sft" / "manifest.json").read_text())["status"] == "completed"
    assert (tmp_path / "sft" / "model" / "model.safetensors").is_file()


# --------------------------------------------------------------------------- the helpers, in one process


def test_single_process_helpers_are_no_ops():
    dist = Distributed()
    assert dist.is_main and not dist.active
    value = torch.tensor(2.5)
    assert dist.mean(value) is value
    assert dist.agree(True, 7, 0, device=torch.device("cpu")) == (True, [7, 0])
    assert dist.on_main(lambda: 3) == 3
    with pytest.raises(BabyLlamaError, match="disk"):
        dist.on_main(lambda: (_ for _ in ()).throw(BabyLlamaError("disk full")))
    from babyllama.records.run import NullRecord

    null = NullRecord("folder")
    assert null.folder.name == "folder" and null.log_metrics({"loss": 1}) is None and null.arguments_text() == ""
    with pytest.raises(AttributeError):  # a misspelled call fails on every rank, not only on rank 0
        null.log_metric({"loss": 1})


def test_fit_global_batch():
    saved = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}
    values, note = fit_global_batch(saved, {}, 2, 2)  # same world: nothing changes
    assert values == saved and note is None
    values, note = fit_global_batch(saved, {}, 2, 4)
    assert values == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1}
    assert "processes 2 -> 4" in note and "stays 16" in note
    values, _ = fit_global_batch(saved, {"per_device_train_batch_size": 2}, 2, 1)
    assert values["gradient_accumulation_steps"] == 8
    with pytest.raises(BabyLlamaError, match="not a multiple of 12"):
        fit_global_batch(saved, {}, 2, 3)
    with pytest.raises(BabyLlamaError, match="different global batch"):
        fit_global_batch(saved, {"gradient_accumulation_steps": 4}, 2, 2)


def test_torchrun_command_line(monkeypatch):
    for name in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    argv = torchrun_argv(4, "pretrain", {"data": "d", "report_to": ["none"], "bf16": True, "eval_steps": None})
    assert argv[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert argv[6:] == ["babyllama", "pretrain", "--data", "d", "--report_to", "none", "--bf16", "true",
                        "--eval_steps", "none"]
    with pytest.raises(BabyLlamaError, match="at least 1"):
        torchrun_argv(0, "pretrain", {})
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(BabyLlamaError, match="inside a torchrun"):
        torchrun_argv(2, "pretrain", {})
