"""A pass-through to EleutherAI's lm-evaluation-harness (`pip install 'babyllama[eval]'`).

The model goes in as a loaded `transformers` model object (lm_eval's `HFLM(pretrained=model, tokenizer=...)`), so
every babyllama model works: a run, a checkpoint, a LoRA adapter, an exported folder. Task names are lm_eval's
own, plus the tasks of `--include_path DIR` (lm_eval's YAML task files), plus `babyllama_text`: a
`loglikelihood_rolling` task over the documents of `--text FILE`, written here, which needs no network and scores
the same text, the same way, as `eval --task bpb`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

from babyllama.errors import BabyLlamaError

TEXT_TASK = "babyllama_text"


def text_task_yaml(documents: list[str], folder: Path) -> Path:
    """Write the documents as JSON lines and a task YAML reading them; returns the YAML path."""
    data = folder / f"{TEXT_TASK}.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for doc in documents:
            handle.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    config = {
        "task": TEXT_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "text",  # a column name: the document's text, unchanged
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"}, {"metric": "bits_per_byte"}],
        "metadata": {"version": 1.0},
    }
    path = folder / f"{TEXT_TASK}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def run_harness(model, tokenizer, tasks: list[str], seq_len: int, batch_size: int = 16, device="cpu",
                include_path: Optional[str] = None, documents: Optional[list[str]] = None,
                limit: Optional[float] = None, num_fewshot: Optional[int] = None) -> dict:
    """lm_eval's `results` dict ({task: {metric,filter: value}}) for a loaded model."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise BabyLlamaError("--task lm_eval needs lm-evaluation-harness: pip install 'babyllama[eval]' "
                             "(or pip install lm_eval)") from None
    if TEXT_TASK in tasks and not documents:
        raise BabyLlamaError(f"task {TEXT_TASK} scores the documents of --text FILE: give --text")
    with tempfile.TemporaryDirectory(prefix="babyllama-lm-eval-") as tmp:
        paths = [include_path] if include_path else []
        if documents:
            text_task_yaml(documents, Path(tmp))
            paths.append(tmp)
        manager = TaskManager(include_path=paths or None)
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            raise BabyLlamaError(f"--tasks: unknown lm_eval task(s) {unknown}; `lm_eval ls tasks` lists them, "
                                 f"--include_path DIR adds YAML task files, --text FILE adds {TEXT_TASK}")
        # No BOS through the tokenizer: lm_eval puts the prefix token (BOS) in front itself.
        lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=seq_len, batch_size=batch_size,
                  device=str(device), add_bos_token=False)
        out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit,
                                      num_fewshot=num_fewshot, log_samples=False, bootstrap_iters=0)
    if out is None:
        raise BabyLlamaError("lm_eval returned no results")
    return out["results"]


def results_table(results: dict) -> str:
    lines = ["| task | metric | value |", "|---|---|---|"]
    for task, metrics in results.items():
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not key.endswith("_stderr,none") and key != "alias":
                lines.append(f"| {task} | {key.replace(',none', '')} | {value:.4f} |")
    return "\n".join(lines)
