"""The run folder's owner rules and the resume path: one writer per run (an OS lock), overwrite only what is ours,
every model file verified before use, resume as strict as a new run, and run folders of the previous version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from babyllama.cli import main
from babyllama.errors import BabyLlamaError
from babyllama.records.lock import RunLock
from babyllama.records.run import NullRecord, RunRecord
from conftest import REPO, TINY_MODEL, TINY_TRAIN, pretrain_tiny

FAST = dict(per_device_train_batch_size=4, seq_len=32, eval_steps=1000, num_samples=0, logging_steps=1)
# The last commit before checkpoint formats were numbered: its source makes the "old" run folder.
PREVIOUS_COMMIT = "4312d48"


def cli(capsys, *argv) -> tuple[int, str]:
    """Run a command in-process; (exit status, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    captured = capsys.readouterr()
    cli.out = captured.out
    return code, captured.err


@pytest.fixture(scope="module")
def run2(prepared_512, tmp_path_factory) -> Path:
    return pretrain_tiny(prepared_512, tmp_path_factory.mktemp("runs"), "r", max_steps=2, save_steps=1, **FAST)


# --------------------------------------------------------------------------- resume is as strict as a new run

BAD_ON_RESUME = {
    "logging_steps": "0", "eval_steps": "0", "save_steps": "-3", "max_steps": "0", "max_time": "nan",
    "save_total_limit": "-1", "num_samples": "-1", "sample_max_new_tokens": "0", "eval_max_tokens": "0",
    "per_device_eval_batch_size": "0", "max_consecutive_nonfinite": "0", "stop_timeout": "inf",
    "report_to": "tensorbord", "device": "tpu", "loss_impl": "fastest", "disable_tqdm": "maybe", "fsdp": "2",
    "data": "/nonexistent/data", "resume_from_checkpoint": "/nonexistent/run",
    "gradient_checkpointing": "maybe", "license": "not-a-license",
}


def test_every_resumable_option_is_covered():
    from babyllama.config import resumable_options

    assert resumable_options() == set(BAD_ON_RESUME)


@pytest.mark.parametrize("option", sorted(BAD_ON_RESUME))
def test_resume_checks_every_option_it_accepts(option, run2, capsys):
    before = {p: p.stat().st_mtime_ns for p in run2.rglob("*") if p.is_file()}
    argv = ["pretrain", "--resume_from_checkpoint", run2, f"--{option}", BAD_ON_RESUME[option], "--disable_tqdm"]
    if option == "resume_from_checkpoint":
        argv = argv[:1] + argv[3:]
    code, err = cli(capsys, *argv)
    assert code != 0 and "Traceback" not in err
    assert option in err or BAD_ON_RESUME[option] in err, err
    assert {p: p.stat().st_mtime_ns for p in run2.rglob("*") if p.is_file()} == before  # nothing was touched


def test_max_steps_zero_is_an_error_not_an_epoch(prepared_512, tmp_path, capsys):
    code, err = cli(capsys, "pretrain", "--data", prepared_512, "--output_dir", tmp_path, "--max_steps", "0")
    assert code == 1 and "--max_steps must be a positive number of steps, or -1" in err
    assert not (tmp_path / "runs").exists() and not list(tmp_path.iterdir())


def test_resume_refuses_data_of_another_tokenizer(run2, tmp_path):
    from babyllama.data.prepare import PrepareConfig, prepare
    from babyllama.train.loop import pretrain

    corpus = tmp_path / "stories.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"Once upon a time there was a dog number {i}. It ran far."})
                                for i in range(200)))
    other = tmp_path / "other"
    prepare(PrepareConfig(data=str(corpus), vocab_size=320, out=str(other), disable_tqdm=True), log=lambda _: None)
    with pytest.raises(BabyLlamaError, match="different tokenizer than the run") as err:
        pretrain({"resume_from_checkpoint": str(run2), "data": str(other), "max_steps": 4}, {}, log=lambda _: None)
    assert "--tokenizer" in str(err.value)


# --------------------------------------------------------------------------- one writer per run


def test_a_second_writer_stops_at_once_naming_the_owner(run2, tmp_path):
    from babyllama.train.loop import pretrain

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from babyllama.records.lock import RunLock; "
        "held = RunLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)"), str(REPO / "src"),
        str(run2)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        owner = RunLock.owner(run2)
        assert owner["pid"] == holder.pid
        started = time.time()
        with pytest.raises(BabyLlamaError, match=f"in use by process {holder.pid} on ") as err:
            pretrain({"resume_from_checkpoint": str(run2), "max_steps": 4}, {}, log=lambda _: None)
        assert time.time() - started < 30 and "kill" in str(err.value)
        # A new run of the same name with --overwrite_output_dir is refused too.
        with pytest.raises(BabyLlamaError, match="in use by process"):
            RunRecord.start(str(run2.parent), run2.name, "pretrain", {}, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    assert RunLock.owner(run2) is None  # the kernel dropped the lock with the process: nothing stale


def test_the_record_holds_the_lock_and_marks_how_the_run_ended(tmp_path):
    with pytest.raises(RuntimeError):
        with RunRecord.start(str(tmp_path), "r", "pretrain", {}) as record:
            assert RunLock.owner(record.folder)["pid"] == os.getpid()
            record.summary = lambda: {"step": 7}
            raise RuntimeError("boom")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: boom" and manifest["step"] == 7
    assert RunLock.owner(tmp_path / "r") is None
    with RunRecord.start(str(tmp_path), "r", "pretrain", {}, resume=True):
        pass
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "completed"


def test_null_record_has_the_same_methods_and_no_catch_all(tmp_path):
    public = {n for n in dir(RunRecord) if not n.startswith("_")} - {"start", "save"}
    assert public <= set(dir(NullRecord))
    with pytest.raises(AttributeError):
        NullRecord(tmp_path).log_metric({})


# --------------------------------------------------------------------------- never destroy what is not ours


def test_overwrite_replaces_only_a_run_folder_that_is_not_an_input(prepared_512, tmp_path):
    from babyllama.train.loop import pretrain

    train = {**TINY_TRAIN, **FAST, "data": str(prepared_512), "output_dir": str(tmp_path), "max_steps": 1,
             "overwrite_output_dir": True}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own files")
    with pytest.raises(BabyLlamaError, match="not a babyllama run folder"):
        pretrain({**train, "run_name": "mine"}, TINY_MODEL, log=lambda _: None)
    assert (mine / "notes.txt").read_text() == "my own files"

    data_parent = tmp_path / "holder"
    shutil.copytree(prepared_512, data_parent / "data")
    (data_parent / "manifest.json").write_text(json.dumps({"kind": "pretrain"}))  # looks like a run
    with pytest.raises(BabyLlamaError, match="an input of this command"):
        pretrain({**train, "data": str(data_parent / "data"), "run_name": "holder"}, TINY_MODEL, log=lambda _: None)
    assert (data_parent / "data" / "manifest.json").is_file()

    first = pretrain({**train, "run_name": "again"}, TINY_MODEL, log=lambda _: None)
    (first / "stale.txt").write_text("from the first run")
    second = pretrain({**train, "run_name": "again"}, TINY_MODEL, log=lambda _: None)
    assert second == first and not (first / "stale.txt").exists()
    assert json.loads((first / "manifest.json").read_text())["status"] == "completed"


# --------------------------------------------------------------------------- every model file verified


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_final_model_is_a_clear_error(run2, tmp_path, damage, capsys):
    run = tmp_path / "run"
    shutil.copytree(run2, run)
    weights = run / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(4096)}[damage])
    for argv in (["sample", "--model", run, "--max_new_tokens", "4"],
                 ["export", "--model", run, "--format", "hf", "--out", tmp_path / "out"]):
        code, err = cli(capsys, *argv)
        assert code == 1 and "Traceback" not in err and str(weights) in err, err
    from babyllama.train.loop import pretrain

    with pytest.raises(BabyLlamaError, match="model.safetensors"):
        pretrain({"data": json.loads((run / "manifest.json").read_text())["data"]["folder"], "init_from": str(run),
                  "output_dir": str(tmp_path), "run_name": "child", "max_steps": 1}, {}, log=lambda _: None)
    from babyllama.tune.hfmodel import load_hf_model

    with pytest.raises(BabyLlamaError, match="model.safetensors"):
        load_hf_model(run)


# --------------------------------------------------------------------------- run folders of the previous version


@pytest.fixture(scope="module")
def previous_src(tmp_path_factory) -> Path:
    """The previous version's src/: $BABYLLAMA_PREVIOUS_SRC, else taken from this repository's history."""
    if os.environ.get("BABYLLAMA_PREVIOUS_SRC"):
        return Path(os.environ["BABYLLAMA_PREVIOUS_SRC"])
    out = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_COMMIT, "src"], capture_output=True)
    if archive.returncode != 0:  # a shallow clone or an unpacked sdist: no history to take it from
        pytest.skip(f"commit {PREVIOUS_COMMIT} is not in this checkout's history")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


def test_a_run_of_the_previous_version_resumes_exports_and_lists(prepared_512, previous_src, tmp_path, capsys):
    runs = tmp_path / "runs"
    flags = {**TINY_TRAIN, **TINY_MODEL, **FAST, "max_steps": 3, "save_steps": 1}
    argv = [sys.executable, "-m", "babyllama", "pretrain", "--data", str(prepared_512), "--output_dir", str(runs),
            "--run_name", "old"] + [x for k, v in flags.items() for x in (f"--{k}", str(v))]
    env = {**os.environ, "PYTHONPATH": str(previous_src)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    old = runs / "old"
    index = json.loads((old / "checkpoints" / "step_000003" / "checkpoint.json").read_text())
    assert "format" not in index  # written before checkpoint formats were numbered

    code, err = cli(capsys, "export", "--model", old / "checkpoints" / "step_000003", "--format", "hf",
                    "--out", tmp_path / "exported")
    assert code == 0, err
    (old / "model").rename(tmp_path / "old-model")  # resume from the old checkpoint, not the final model
    code, err = cli(capsys, "pretrain", "--resume_from_checkpoint", old, "--max_steps", "5", "--disable_tqdm")
    assert code == 0, err
    manifest = json.loads((old / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["step"] == 5
    assert json.loads((old / "checkpoints" / "step_000005" / "checkpoint.json").read_text())["format"] == 1
    code, _ = cli(capsys, "runs", "list", "--runs_dir", runs)
    assert code == 0 and any(line.startswith("old ") for line in cli.out.splitlines())
