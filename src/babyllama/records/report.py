"""What `babyllama runs list / show / compare / report` print and write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from babyllama.records.arguments import format_arguments
from babyllama.records.redact import redact_text
from babyllama.records.registry import Run, flat_config, fmt, fmt_seconds, lineage, run_folder_of, table

LIST_HEADERS = ["RUN", "KIND", "STATUS", "STARTED", "TIME", "STEPS", "TOKENS", "TRAIN LOSS", "EVAL LOSS", "PARAMS",
                "PARENT"]
# Keys that differ between any two runs without meaning anything.
NOISE_KEYS = {"train.run_name", "run_name", "train.overwrite_output_dir", "train.resume_from_checkpoint"}
METRIC_ROWS = [("kind", "kind"), ("status", "status"), ("steps", "steps"), ("tokens", "tokens seen"),
               ("parameters", "parameters"), ("train_loss", "final train loss"), ("eval_loss", "final eval loss"),
               ("best_eval_loss", "best eval loss"), ("eval_bpb", "eval bits/byte"),
               ("eval_perplexity", "eval perplexity"), ("tokens_per_second", "tokens/s (mean)"), ("seconds", "time")]


def _parent_name(parent: Any) -> str:
    """A parent that is (inside) a run folder shows as that run's name, anything else as its last path part."""
    if not parent:
        return "-"
    folder = run_folder_of(str(parent))
    return folder.name if folder is not None else Path(str(parent)).name


def _command(manifest: dict) -> str:
    """The command line as typed: `python -m babyllama` and the console script both show as `babyllama`."""
    argv = list(manifest.get("command") or [])
    if argv and (argv[0].endswith("babyllama/__main__.py") or Path(argv[0]).name == "babyllama"):
        argv[0] = "babyllama"
    return " ".join(argv)


def list_text(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        s = run.summary()
        rows.append([s["run"], s["kind"], s["status"], (s["started"] or "-")[:16].replace("T", " "),
                     fmt_seconds(s["seconds"]), s["steps"], s["tokens"], s["train_loss"], s["eval_loss"],
                     s["parameters"], _parent_name(s["parent"])])
    return table(LIST_HEADERS, rows)


def last_samples(run: Run, sections: int = 1) -> str:
    """The last evaluation's samples from samples.md."""
    path = run.folder / "samples.md"
    if not path.is_file():
        return ""
    parts = re.split(r"(?m)^(?=## step )", path.read_text(encoding="utf-8", errors="replace"))
    return "".join([p for p in parts if p.strip()][-sections:]).strip()


def show_text(run: Run) -> str:
    m, s = run.manifest, run.summary()
    lines = [f"run {run.name}  ({run.folder})", ""]
    facts = [("kind", run.kind), ("status", s["status"] + (f": {m['error']}" if m.get("error") else "")),
             ("started", m.get("started")), ("ended", m.get("ended")), ("time", fmt_seconds(s["seconds"])),
             ("resumed", ", ".join(m.get("resumed") or []) or None),
             ("lineage", " <- ".join(lineage(run)) if m.get("parent") else None),
             ("command", _command(m) or None),
             ("git", f"{m['git']['commit'][:12]}{' (dirty)' if m['git'].get('dirty') else ''}" if m.get("git") else None),
             ("host", (m.get("host") or {}).get("hostname")),
             ("device", ", ".join(f"{k} {v}" for k, v in (m.get("device") or {}).items()) or None),
             ("data", (m.get("data") or {}).get("folder") if isinstance(m.get("data"), dict) else m.get("data")),
             ("tokenizer", (m.get("tokenizer") or {}).get("hash", "")[:16] or None if isinstance(m.get("tokenizer"), dict)
              else m.get("tokenizer")),
             ("parameters", fmt(m.get("model_parameters")) if m.get("model_parameters") else None),
             ("model", m.get("model_path")),
             ("checkpoints", ", ".join(Path(c).name for c in m.get("checkpoints") or []) or None),
             ("versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items()) or None)]
    width = max(len(k) for k, _ in facts)
    lines += [f"{k.ljust(width)}  {v}" for k, v in facts if v not in (None, "")]

    metrics = [(label, s[key]) for key, label in METRIC_ROWS[2:] if s.get(key) is not None]
    if metrics:
        lines += ["", "metrics", table(["METRIC", "VALUE"], [[label, fmt_seconds(v) if label == "time" else v]
                                                              for label, v in metrics])]
    if m.get("trackers"):
        lines += ["", "tracked in"]
        for name, where in m["trackers"].items():
            lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in where.items()))
    lines += ["", "arguments", format_arguments(run.kind, m.get("config") or {}).rstrip()]
    samples = last_samples(run)
    if samples:
        lines += ["", "samples (last evaluation)", samples]
    return "\n".join(lines)


def config_differences(runs: list[Run]) -> list[list[Any]]:
    configs = [flat_config(r) for r in runs]
    keys = sorted(set().union(*configs) - NOISE_KEYS)
    missing = object()
    rows = []
    for key in keys:
        values = [c.get(key, missing) for c in configs]
        if any(v != values[0] for v in values[1:]):
            rows.append([key] + ["-" if v is missing else (fmt(v) if not isinstance(v, (list, dict)) else str(v))
                                 for v in values])
    return rows


def compare_text(runs: list[Run]) -> str:
    names = [r.name for r in runs]
    diffs = config_differences(runs)
    lines = ["config differences"]
    lines.append(table(["KEY"] + names, diffs) if diffs else "  (none: the runs share every config value)")
    summaries = [r.summary() for r in runs]
    rows = [[label] + [fmt_seconds(s[key]) if key == "seconds" else s[key] for s in summaries]
            for key, label in METRIC_ROWS]
    lines += ["", "metrics", table(["METRIC"] + names, rows)]
    return "\n".join(lines)


def write_report(run: Run) -> Path:
    """report.md in the run folder, with loss.png, lr.png, throughput.png and grad_norm.png beside it."""
    from babyllama.records.plots import report_plots

    plots = report_plots(run, run.folder)
    m, s = run.manifest, run.summary()
    out = [f"# Run {run.name}", "",
           f"{run.kind} run, **{s['status']}**" + (f" ({m['error']})" if m.get("error") else "")
           + f"; started {m.get('started') or '?'}, ended {m.get('ended') or '-'}, {fmt_seconds(s['seconds'])}.", ""]
    if m.get("parent"):
        out += [f"Lineage: {' <- '.join(lineage(run))}", ""]
    rows = [[label, fmt_seconds(s[key]) if key == "seconds" else s[key]] for key, label in METRIC_ROWS[2:]
            if s.get(key) is not None]
    out += ["## Metrics", "", table(["metric", "value"], rows, markdown=True), ""]
    if run.problems:
        out += [f"Skipped in metrics.jsonl ({len(run.problems)}):", ""] + [f"- {p}" for p in run.problems[:20]] + [""]
    captions = {"loss": "Training and validation loss", "lr": "Learning rate", "throughput": "Throughput",
                "grad_norm": "Gradient norm"}
    if plots:
        out += ["## Plots", ""]
        for key, path in plots.items():
            out += [f"### {captions[key]}", "", f"![{captions[key]}]({path.name})", ""]
    if m.get("trackers"):
        out += ["## Tracked in", ""]
        out += [f"- **{name}**: " + ", ".join(f"{k} `{v}`" for k, v in where.items())
                for name, where in m["trackers"].items()]
        out.append("")
    samples = last_samples(run)
    if samples:
        out += ["## Samples (last evaluation)", "", samples.replace("## step", "### step"), ""]
    out += ["## Arguments", "", "```", format_arguments(run.kind, m.get("config") or {}).rstrip(), "```", ""]
    git = m.get("git") or {}
    out += ["## Provenance", "", f"- command: `{_command(m)}`",
            f"- git: {git.get('commit', '-')}{' (dirty)' if git.get('dirty') else ''}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in (m.get('versions') or {}).items())}", ""]
    path = run.folder / "report.md"
    path.write_text(redact_text("\n".join(out)), encoding="utf-8")
    return path
