"""examples/quickstart.ipynb runs end to end (prepare -> pretrain -> record and plots -> sample -> sft -> chat),
executed with nbclient on a slice of TinyStories and a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _slice(source: Path, target: Path, stories: int) -> None:
    # The .txt layout of TinyStories: every story followed by "\n<|endoftext|>\n".
    separator = "\n<|endoftext|>\n"
    parts = source.read_text(encoding="utf-8").split(separator)[:stories]
    target.write_text(separator.join(parts) + separator, encoding="utf-8")


def test_quickstart_notebook_runs(data_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    stories = tmp_path / "stories"
    stories.mkdir()
    _slice(data_dir / "tinystories" / "train.txt", stories / "train.txt", 400)
    _slice(data_dir / "tinystories" / "valid.txt", stories / "valid.txt", 40)
    settings = {"QUICKSTART_STORIES": stories, "QUICKSTART_INSTRUCTIONS": data_dir / "instruct" / "instructions.jsonl",
                "QUICKSTART_WORK": tmp_path / "work", "QUICKSTART_STEPS": 6, "QUICKSTART_SFT_STEPS": 2,
                "QUICKSTART_SFT_EXAMPLES": 24, "QUICKSTART_EVAL_TOKENS": 2048, "QUICKSTART_REPORT_TO": "tensorboard"}
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits this environment

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    text = "\n".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    images = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert len(images) == 2  # the loss and learning-rate plots, shown inline
    runs = tmp_path / "work" / "runs"
    lists = [line.split() for line in text.splitlines() if line.startswith(("demo ", "demo-sft "))]
    assert ["demo", "pretrain", "completed"] == lists[0][:3]
    assert any(row[:3] == ["demo-sft", "sft", "completed"] and row[-1] == "demo" for row in lists)
    assert (runs / "demo" / "report.md").is_file() and (runs / "demo" / "tensorboard").is_dir()
    assert "PretrainArguments(" in text  # the resolved arguments printed at the start
    assert "user: Name a color of the sky." in text and "assistant:" in text
