"""Finding and reading run folders: the data behind `babyllama runs list/show/compare/report`.

Works on any run folder written by RunRecord (pretrain, sft, dpo), and only reads: nothing here needs the run's
process, its tracker, or the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from babyllama.errors import BabyLlamaError, did_you_mean
from babyllama.records.run import effective_status

# Names the same quantity goes by in the native loop and in transformers' Trainer logs.
TOKEN_KEYS = ("tokens_seen", "num_input_tokens_seen", "num_tokens")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
# Keys whose values are plotted or summed: a row where one of them is not a number has that value dropped.
NUMERIC_KEYS = {"step", "epoch", "loss", "eval_loss", "learning_rate", "lr", "grad_norm", "tokens_per_second",
                "elapsed_seconds", "eval_bpb", "eval_perplexity", "mfu", *TOKEN_KEYS}


@dataclass
class Run:
    folder: Path
    manifest: dict
    metrics: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # malformed metrics.jsonl lines, named

    @property
    def name(self) -> str:
        return self.manifest.get("run_name") or self.folder.name

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "?")

    @property
    def status(self) -> str:
        return effective_status(self.manifest)

    def series(self, key: str, x: str = "step") -> tuple[list[float], list[float]]:
        """(xs, ys) of every logged row holding both keys, in logging order."""
        xs, ys = [], []
        for row in self.metrics:
            x_value = row.get(x) if x != "tokens" else tokens_of(row)
            if is_number(row.get(key)) and is_number(x_value):
                xs.append(float(x_value))
                ys.append(float(row[key]))
        return xs, ys

    def last(self, key: str) -> Optional[float]:
        for row in reversed(self.metrics):
            if is_number(row.get(key)):
                return row[key]
        return None

    def summary(self) -> dict[str, Any]:
        """The numbers a table of runs shows: from the manifest when the run finished, else from its metrics."""
        m = self.manifest
        final = m.get("final_metrics") or {}
        best = m.get("best_metrics") or {}
        steps = m.get("step") if m.get("step") is not None else self.last("step")
        tokens = m.get("tokens_seen")
        if tokens is None:
            tokens = next((self.last(k) for k in TOKEN_KEYS if self.last(k) is not None), None)
        eval_loss = final.get("eval_loss", self.last("eval_loss"))
        _, eval_losses = self.series("eval_loss")
        throughput = [r["tokens_per_second"] for r in self.metrics if isinstance(r.get("tokens_per_second"), (int, float))]
        return {
            "run": self.name, "kind": self.kind, "status": self.status, "started": m.get("started"),
            "seconds": duration_seconds(m, self.last("elapsed_seconds")), "steps": steps, "tokens": tokens,
            "train_loss": self.last("loss"), "eval_loss": eval_loss,
            "best_eval_loss": best.get("eval_loss", min(eval_losses) if eval_losses else None),
            "eval_bpb": final.get("eval_bpb", self.last("eval_bpb")),
            "eval_perplexity": final.get("eval_perplexity", self.last("eval_perplexity")),
            "tokens_per_second": sum(throughput) / len(throughput) if throughput else None,
            "parameters": m.get("model_parameters"), "parent": m.get("parent"),
        }


def parse_time(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).timestamp()
    except ValueError:
        return None


def duration_seconds(manifest: dict, elapsed: Optional[float] = None) -> Optional[float]:
    """Wall time of a run: start to end, or start to now while it runs, or the loop's own count."""
    start, end = parse_time(manifest.get("started")), parse_time(manifest.get("ended"))
    if start and end:
        return end - start
    if start and manifest.get("status") == "running" and effective_status(manifest) == "running":
        return time.time() - start
    return elapsed


def tokens_of(row: dict) -> Optional[float]:
    return next((row[k] for k in TOKEN_KEYS if isinstance(row.get(k), (int, float))), None)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_metrics(folder: Path, problems: Optional[list[str]] = None) -> list[dict]:
    """metrics.jsonl rows. A malformed line (cut short by a killed process, edited by hand) is skipped, and so
    is a value that should be a number and is not; each is described in `problems` (file:line: what)."""
    path = folder / "metrics.jsonl"
    problems = [] if problems is None else problems
    rows = []
    if not path.is_file():
        return rows
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as err:
            problems.append(f"{where}: not valid JSON ({err.msg}); line skipped")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: a JSON {type(row).__name__}, not an object; line skipped")
            continue
        bad = sorted(k for k, v in row.items() if k in NUMERIC_KEYS and v is not None and not is_number(v))
        if bad:
            problems.append(f"{where}: {', '.join(bad)} should be numbers; those values skipped")
            row = {k: v for k, v in row.items() if k not in bad}
        rows.append(row)
    return rows


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BabyLlamaError(f"{folder} is not a run folder (no manifest.json)") from None
    except ValueError as err:
        raise BabyLlamaError(f"{folder / 'manifest.json'} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise BabyLlamaError(f"{folder / 'manifest.json'} holds a JSON {type(manifest).__name__}, not a run record")
    problems: list[str] = []
    return Run(folder, manifest, read_metrics(folder, problems), problems)


def find_runs(runs_dir: Path) -> list[Run]:
    """Every run folder directly under runs_dir, oldest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise BabyLlamaError(f"no runs folder at {runs_dir}: train something first, or point --runs_dir at one")
    runs = []
    for manifest in sorted(runs_dir.glob("*/manifest.json")):
        try:
            runs.append(load_run(manifest.parent))
        except BabyLlamaError:
            continue  # a half-written folder must not hide the others
    return sorted(runs, key=lambda r: (parse_time(r.manifest.get("started")) or 0, r.name))


def resolve_run(name: str, runs_dir: Path) -> Run:
    """A run by name (under runs_dir) or by path."""
    candidates = [Path(runs_dir) / name, Path(name)]
    for folder in candidates:
        if (folder / "manifest.json").is_file():
            return load_run(folder)
    known = [p.parent.name for p in Path(runs_dir).glob("*/manifest.json")] if Path(runs_dir).is_dir() else []
    raise BabyLlamaError(f"no run '{name}' in {runs_dir}{did_you_mean(name, known)}"
                         + (f"; runs there: {', '.join(sorted(known)[:10])}" if known else ""))


def run_folder_of(path: Optional[str]) -> Optional[Path]:
    """The run folder a parent reference points into (a run, its model/ or a checkpoint), if any."""
    if not path:
        return None
    p = Path(path)
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


def lineage(run: Run, limit: int = 10) -> list[str]:
    """This run and its ancestors: run names where the parent is a run folder, else the reference itself."""
    chain = [run.name]
    parent = run.manifest.get("parent")
    seen = {run.folder.resolve()}
    while parent and len(chain) < limit:
        folder = run_folder_of(parent)
        if folder is None or folder.resolve() in seen:
            chain.append(str(parent))
            break
        seen.add(folder.resolve())
        ancestor = load_run(folder)
        chain.append(ancestor.name)
        parent = ancestor.manifest.get("parent")
    return chain


def flat_config(run: Run) -> dict[str, Any]:
    """The run's config as dotted keys (train.learning_rate, model.dim ...)."""
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(inner, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = value

    walk(run.manifest.get("config") or {}, "")
    return out


# --------------------------------------------------------------------------- text tables


def fmt(value: Any) -> str:
    """Compact cell text: 3.1416 -> 3.142, 1234567 -> 1.23M, None -> -."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                return f"{value / size:.3g}{unit}"
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def fmt_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def table(headers: list[str], rows: list[list[Any]], markdown: bool = False) -> str:
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
