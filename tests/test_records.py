"""Run records: manifest contents and status changes, `runs list/show/compare/report`, reproduction from a manifest,
redaction, the arguments printout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from babyllama.cli import main
from babyllama.errors import BabyLlamaError
from babyllama.records import registry
from babyllama.records.run import RunRecord, effective_status
from conftest import TINY_MODEL, TINY_TRAIN, pretrain_tiny


def cli(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as exit:
        return exit.code or 0
    return 0


def manifest_of(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


# --------------------------------------------------------------------------- manifest and status


def test_manifest_records_what_ran(tiny_run):
    m = manifest_of(tiny_run)
    assert m["kind"] == "pretrain" and m["status"] == "completed" and m["run_name"] == "tiny"
    assert m["config"]["train"]["max_steps"] == 40 and m["config"]["model"]["dim"] == 64
    assert m["versions"]["torch"] and m["host"]["pid"] and m["host"]["pid_start"]
    assert m["data"]["fingerprint"] and len(m["tokenizer"]["hash"]) >= 16
    assert m["started"] <= m["ended"] and m["step"] == 40 and m["tokens_seen"] == 40 * 8 * 64
    assert m["final_metrics"]["eval_loss"] >= m["best_metrics"]["eval_loss"] - 1e-9
    assert m["model_path"].endswith("model") and all(Path(c).is_dir() for c in m["checkpoints"])
    # The resolved arguments, in the TrainingArguments(...) style, one block per section.
    arguments = (tiny_run / "arguments.txt").read_text()
    assert arguments.startswith("PretrainArguments(\n") and "\nModelConfig(\n" in arguments
    assert "learning_rate=0.003,\n" in arguments and "report_to=['none'],\n" in arguments and "n_kv_heads=2,\n" in arguments
    lines = arguments.split("ModelConfig(")[0].splitlines()[1:-1]
    assert lines == sorted(lines)


def test_status_changes_and_dead_process(tmp_path):
    record = RunRecord.start(str(tmp_path), "r1", "pretrain", {"train": {"learning_rate": 1e-3}})
    assert effective_status(manifest_of(tmp_path / "r1")) == "running"  # this process is alive
    record.finish("failed", error="RuntimeError: boom")
    m = manifest_of(tmp_path / "r1")
    assert m["status"] == "failed" and m["error"] == "RuntimeError: boom" and m["ended"]

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = dict(m["host"], pid=gone.pid, pid_start=None)
    assert effective_status({"status": "running", "host": host}) == "interrupted"
    assert effective_status({"status": "running", "host": dict(host, hostname="elsewhere")}) == "running"
    # A reused pid (same number, another process) is not the run.
    me = dict(m["host"], pid=os.getpid(), pid_start="1")
    assert effective_status({"status": "running", "host": me}) == "interrupted"
    assert effective_status({"status": "completed", "host": host}) == "completed"


def test_sigkilled_run_is_listed_as_interrupted(prepared_512, tmp_path, capsys):
    runs = tmp_path / "runs"
    flags = {**TINY_TRAIN, **TINY_MODEL, "max_steps": 100000, "logging_steps": 1, "eval_steps": 100000,
             "save_steps": 100000, "num_samples": 0}
    argv = [sys.executable, "-m", "babyllama", "pretrain", "--data", str(prepared_512), "--output_dir", str(runs),
            "--run_name", "killed"] + [x for k, v in flags.items() for x in (f"--{k}", str(v))]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = runs / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the run did not log in time"
        time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert manifest_of(runs / "killed")["status"] == "running"  # nothing could update it ...
    assert cli("runs", "list", "--runs_dir", str(runs)) == 0  # ... but the registry sees the process is gone
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("killed ")]
    assert len(row) == 1 and " interrupted " in row[0]
    assert cli("runs", "show", "killed", "--runs_dir", str(runs)) == 0
    assert "status       interrupted" in capsys.readouterr().out


# --------------------------------------------------------------------------- reproduce and compare


@pytest.fixture(scope="module")
def three_runs(tiny_run, prepared_512, tmp_path_factory):
    """tiny (40 steps, lr 3e-3), small (8 steps, lr 1e-3) and small-again, reproduced from small's manifest."""
    runs = tmp_path_factory.mktemp("compare")
    small = pretrain_tiny(prepared_512, runs, "small", max_steps=8, learning_rate=1e-3, eval_steps=4, logging_steps=2,
                          eval_max_tokens=1024, num_samples=0)
    assert cli("pretrain", "--config", str(small / "manifest.json"), "--run_name", "small-again") == 0
    return runs, [tiny_run, small, runs / "small-again"]


def test_pretrain_config_manifest_reproduces_the_run(three_runs):
    _, (_, small, again) = three_runs
    a, b = manifest_of(small), manifest_of(again)
    assert {k: v for k, v in a["config"]["train"].items() if k != "run_name"} == \
           {k: v for k, v in b["config"]["train"].items() if k != "run_name"}
    assert a["config"]["model"] == b["config"]["model"]
    losses = [[row.get("loss", row.get("eval_loss")) for row in registry.read_metrics(run)] for run in (small, again)]
    assert len(losses[0]) >= 5 and losses[0] == losses[1]  # same data order, same seed: the same numbers


def test_runs_compare_three_runs(three_runs, capsys, tmp_path):
    runs, (tiny, small, again) = three_runs
    png = tmp_path / "compare.png"
    assert cli("runs", "compare", str(tiny), "small", "small-again", "--runs_dir", str(runs), "--out", str(png)) == 0
    out = capsys.readouterr().out
    diffs, metrics = out.split("\nmetrics\n")
    header = diffs.splitlines()[1].split()
    assert header == ["KEY", "tiny", "small", "small-again"]
    rows = {line.split()[0]: line.split()[1:] for line in diffs.splitlines()[3:]}
    assert rows["train.learning_rate"] == ["0.003", "0.001", "0.001"]
    assert rows["train.max_steps"] == ["40", "8", "8"]
    assert "train.run_name" not in rows and "model.dim" not in rows  # same everywhere, or noise
    table = {line[:18].strip(): line[18:].split() for line in metrics.splitlines()[2:] if line.strip()}
    final = [manifest_of(r)["final_metrics"]["eval_loss"] for r in (tiny, small, again)]
    assert table["final eval loss"] == [registry.fmt(v) for v in final]
    assert table["steps"] == ["40", "8", "8"] and table["kind"] == ["pretrain"] * 3
    assert f"loss curves (by step and by tokens): {png}" in out
    assert_nontrivial_png(png, min_width=1000)


# --------------------------------------------------------------------------- report and plots


def assert_nontrivial_png(path: Path, min_width: int = 500) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 300
    rgb = (image[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(rgb, axis=0)
    assert len(colours) > 50, f"{path} looks blank"
    non_white = (rgb < 240).any(axis=1).mean()
    assert 0.01 < non_white < 0.6, f"{path}: {non_white:.1%} of pixels drawn"


def test_report_writes_markdown_and_plots(tiny_run, tmp_path, capsys):
    run = tmp_path / "tiny"  # a copy: the shared fixture stays as it was
    run.mkdir()
    for name in ("manifest.json", "metrics.jsonl", "samples.md", "arguments.txt"):
        shutil.copy(tiny_run / name, run / name)
    assert cli("runs", "report", "tiny", "--runs_dir", str(tmp_path)) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.md'}"
    report = (run / "report.md").read_text()
    for png in ("loss.png", "lr.png", "throughput.png", "grad_norm.png"):
        assert f"]({png})" in report
        assert_nontrivial_png(run / png)
    assert "## Samples (last evaluation)" in report and "PretrainArguments(" in report
    final = manifest_of(run)["final_metrics"]["eval_loss"]
    assert f"| final eval loss | {registry.fmt(final)} |" in report


def test_loss_plot_uses_log_scale_when_loss_spans_a_wide_range(tmp_path):
    from babyllama.records import plots

    wide = registry.Run(tmp_path, {"run_name": "w"}, [{"step": s, "loss": 10.0 / s} for s in range(1, 20)])
    narrow = registry.Run(tmp_path, {"run_name": "n"}, [{"step": s, "loss": 2.0 - s / 100} for s in range(1, 20)])
    import matplotlib.pyplot as plt

    scales = []
    original = plots._save
    plots._save = lambda fig, path: scales.append(fig.axes[0].get_yscale()) or original(fig, path)
    try:
        plots.loss_plot(wide, tmp_path / "w.png")
        plots.loss_plot(narrow, tmp_path / "n.png")
    finally:
        plots._save = original
    assert scales == ["log", "linear"]
    plt.close("all")


# --------------------------------------------------------------------------- fine-tune kinds, lineage, errors


def test_list_and_show_fine_tune_runs_with_lineage(tiny_run, tmp_path, capsys):
    runs = tmp_path / "runs"
    sft = RunRecord.start(str(runs), "chatty", "sft", {"train": {"learning_rate": 2e-4}, "lora": {"r": 8}},
                          parent=str(tiny_run / "model"))
    for step, loss in ((10, 2.5), (20, 2.0)):  # transformers' Trainer names
        sft.log_metrics({"step": step, "loss": loss, "learning_rate": 2e-4, "num_input_tokens_seen": step * 1000})
    sft.log_metrics({"step": 20, "eval_loss": 2.2})
    sft.finish("completed", step=20)
    dpo = RunRecord.start(str(runs), "polite", "dpo", {"train": {"beta": 0.1}}, parent=str(runs / "chatty"))
    dpo.log_metrics({"step": 5, "loss": 0.69, "rewards/margins": 0.1})
    dpo.finish("completed", step=5)
    assert cli("runs", "list", "--runs_dir", str(runs)) == 0
    lines = capsys.readouterr().out.splitlines()
    chatty = next(line.split() for line in lines if line.startswith("chatty"))
    polite = next(line.split() for line in lines if line.startswith("polite"))
    assert chatty[1:3] == ["sft", "completed"] and chatty[-6:] == ["20", "20k", "2", "2.2", "-", "tiny"]
    assert polite[1:3] == ["dpo", "completed"] and polite[-1] == "chatty"
    assert cli("runs", "show", "polite", "--runs_dir", str(runs)) == 0
    out = capsys.readouterr().out
    assert "lineage      polite <- chatty <- tiny" in out and "DpoArguments(\nbeta=0.1,\n)" in out


def test_unknown_run_suggests_a_name(tmp_path, capsys):
    RunRecord.start(str(tmp_path), "demo-lr3e-3", "pretrain", {}).finish("completed")
    with pytest.raises(BabyLlamaError, match=r"no run 'demo-lr3e3'.*did you mean \"demo-lr3e-3\""):
        registry.resolve_run("demo-lr3e3", tmp_path)
    assert cli("runs", "show", "nope", "--runs_dir", str(tmp_path)) == 1
    assert "error: no run 'nope'" in capsys.readouterr().err


def test_metrics_line_cut_by_a_kill_is_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert registry.read_metrics(tmp_path) == [{"step": 1, "loss": 2.0}]


# --------------------------------------------------------------------------- redaction


def test_redaction_by_name_shape_and_value(monkeypatch):
    from babyllama.records.redact import redact, redact_argv, redact_text

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-but-long")
    config = {"hub_token": "abc123secret", "tokenizer": "data/tok", "eval_max_tokens": 4096, "api_key": None,
              "uri": "postgresql://bob:s3cr3tpw@db:5432/mlflow", "note": "key=" + "k" * 40,
              "space": "https://x.hf.space/?write_token=abcdef123", "nested": [{"password": "pw123456"}],
              "hf": "hf_" + "A" * 30}
    out = redact(config)
    assert out == {"hub_token": "<HUB_TOKEN>", "tokenizer": "data/tok", "eval_max_tokens": 4096, "api_key": None,
                   "uri": "postgresql://bob:<PASSWORD>@db:5432/mlflow", "note": "key=<WANDB_API_KEY>",
                   "space": "https://x.hf.space/?write_token=<SECRET>", "nested": [{"password": "<PASSWORD>"}],
                   "hf": "<HF_TOKEN>"}
    assert redact_argv(["babyllama", "sft", "--hub_token", "abc", "--hub-token=abc", "--lr", "1"]) == \
           ["babyllama", "sft", "--hub_token", "<HUB_TOKEN>", "--hub-token=<HUB_TOKEN>", "--lr", "1"]
    assert redact_text("false-but-long") == "false-but-long"  # not a secret variable


def test_stored_credentials_are_redacted_too(tmp_path, monkeypatch):
    from babyllama.records import redact

    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password wandbkey0123456789abcdef\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    redact.stored_credentials.cache_clear()
    try:
        assert redact.redact_text("key wandbkey0123456789abcdef here") == "key <NETRC_PASSWORD> here"
    finally:
        redact.stored_credentials.cache_clear()
