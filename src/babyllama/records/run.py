"""A run folder: the record of one pretraining or fine-tuning run, readable without babyllama.

    runs/<run_name>/manifest.json   what ran, on what, from what, how it ended
    runs/<run_name>/metrics.jsonl   one JSON object per logged or evaluated step
    runs/<run_name>/samples.md      generations at each evaluation
    runs/<run_name>/arguments.txt   the resolved arguments, as printed at the start
    runs/<run_name>/.lock           held by the process writing the run (records.lock)

A record is a context manager: `with RunRecord.start(...) as record:` owns the lock and the trackers, and its exit
marks the run completed, failed or interrupted (the one place that does). Ranks that do not record get a
NullRecord with the same methods. Everything written here passes through records.redact: no secret is ever saved
in clear.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from babyllama import __version__
from babyllama.errors import BabyLlamaError
from babyllama.layout import LOCK, MANIFEST
from babyllama.records.arguments import format_arguments
from babyllama.records.lock import RunLock
from babyllama.records.redact import redact, redact_argv, redact_text
from babyllama.records.trackers import NullTrackers, Trackers

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
PACKAGES = ("torch", "numpy", "tokenizers", "transformers", "trl", "peft", "accelerate", "safetensors", "datasets")


def default_run_name() -> str:
    return time.strftime("run%Y_%m_%d_%H_%M_%S")


def check_run_name(name: str) -> str:
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise BabyLlamaError(f"run name '{name}' is not allowed: use letters, digits, '.', '_', '+', '-' "
                             f"(no slashes), at most 128 characters")
    return name


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "babyllama": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_state(cwd: Optional[Path] = None) -> Optional[dict]:
    """Commit and dirty flag of the user's working directory, when it is a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def process_start_time(pid: int) -> Optional[str]:
    """When a process started (Linux clock ticks since boot), so a reused pid is not taken for the run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name in (...) may contain spaces


def process_alive(host: Optional[dict]) -> Optional[bool]:
    """Is the process recorded in manifest['host'] still running? None when it ran on another machine."""
    if not host or host.get("hostname") != socket.gethostname() or not host.get("pid"):
        return None
    pid = int(host["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    recorded = host.get("pid_start")
    return recorded is None or process_start_time(pid) in (None, recorded)


def effective_status(manifest: dict) -> str:
    """The manifest's status, except that a 'running' run whose process is gone is 'interrupted'."""
    status = manifest.get("status", "unknown")
    if status == "running" and process_alive(manifest.get("host")) is False:
        return "interrupted"
    return status


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_overwrite(folder: Path, inputs: tuple = ()) -> None:
    """--overwrite_output_dir replaces a folder only if babyllama made it (a run manifest) and it is not (and does
    not hold) one of this command's inputs; whether a live process owns it, the lock says."""
    if not (folder / MANIFEST).is_file():
        raise BabyLlamaError(f"--overwrite_output_dir: {folder} is not a babyllama run folder (no {MANIFEST}), so it "
                             f"is not replaced; move it away yourself or choose another --run_name")
    resolved = folder.resolve()
    for given in inputs:
        if given and _contains(resolved, Path(given).resolve()):
            raise BabyLlamaError(f"--overwrite_output_dir: {folder} holds {given}, an input of this command; it is "
                                 f"not replaced. Choose another --run_name or --output_dir")


def _empty_except_lock(folder: Path) -> None:
    import shutil

    for entry in folder.iterdir():
        if entry.name == LOCK:  # the lock stays: this process holds it, and a new file would not be held
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class RunRecord:
    """Writes one run's manifest, metrics and samples. Only the main process of a run creates one."""

    def __init__(self, folder: Path, manifest: dict, lock: Optional[RunLock] = None):
        self.folder = folder
        self.manifest = manifest
        self.lock = lock
        self.trackers: Trackers | NullTrackers = NullTrackers()
        self.summary = None  # a callable giving the fields recorded when the run ends (step, metrics ...)
        self._metrics = open(folder / "metrics.jsonl", "a", encoding="utf-8")

    @classmethod
    def start(cls, output_dir: str, run_name: str, kind: str, config: dict, *, overwrite: bool = False,
              resume: bool = False, parent: Optional[str] = None, extra: Optional[dict] = None,
              inputs: tuple = ()) -> "RunRecord":
        """Lock the run folder (new or resumed) and write its manifest; use the record as a context manager."""
        check_run_name(run_name)
        root = Path(output_dir)
        folder = root / run_name
        if folder.resolve().parent != root.resolve():
            raise BabyLlamaError(f"run folder {folder} would escape {root}")
        if folder.exists() and not folder.is_dir():
            raise BabyLlamaError(f"{folder} exists and is not a folder; choose another --run_name")
        if folder.exists() and not resume and not overwrite:
            raise BabyLlamaError(f"run folder {folder} already exists: continue it with --resume_from_checkpoint "
                                 f"{folder}, pick another --run_name, or pass --overwrite_output_dir")
        replace = folder.is_dir() and not resume and any(p.name != LOCK for p in folder.iterdir())
        if replace:
            check_overwrite(folder, inputs)
        lock = RunLock(folder).acquire()  # before anything in the folder changes
        try:
            if replace:
                _empty_except_lock(folder)
            previous = {}
            if resume and (folder / MANIFEST).is_file():
                previous = json.loads((folder / MANIFEST).read_text())
            manifest = {
                "babyllama_version": __version__,
                "kind": kind,
                "run_name": run_name,
                "status": "running",
                "config": config,
                "command": redact_argv(sys.argv),
                "cwd": os.getcwd(),
                "git": git_state(),
                "versions": package_versions(),
                "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "pid": os.getpid(),
                         "pid_start": process_start_time(os.getpid())},
                "parent": parent,
                "started": previous.get("started", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
                "resumed": previous.get("resumed", []) + ([time.strftime("%Y-%m-%dT%H:%M:%S%z")] if resume else []),
                "ended": None,
                **(extra or {}),
            }
            if "trackers" in previous:  # a resumed run continues in the same tracker runs
                manifest.setdefault("trackers", previous["trackers"])
            record = cls(folder, manifest, lock)
            record.save()
            (folder / "arguments.txt").write_text(record.arguments_text(), encoding="utf-8")
        except BaseException:
            lock.release()
            raise
        return record

    # ------------------------------------------------------------------ the run's lifetime

    def __enter__(self) -> "RunRecord":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if kind is None:
            status, error = "completed", None
        elif issubclass(kind, KeyboardInterrupt) or (issubclass(kind, SystemExit) and err.code in (130, 143)):
            status, error = "interrupted", None
        else:
            status, error = "failed", redact_text(f"{kind.__name__}: {err}") if str(err) else kind.__name__
        fields = {}
        try:
            fields = self.summary() if self.summary else {}
        finally:  # recording how the run ended must not hide why it ended
            self.trackers.close(status)
            self.finish(status, **({"error": error} if error else {}), **fields)
        return False

    def finish(self, status: str, **fields: Any) -> None:
        self.manifest.update(status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields)
        self.save()
        if not self._metrics.closed:
            self._metrics.close()
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------------ writing

    def open_trackers(self, names: list[str], config: dict) -> Trackers:
        """The trackers of --report_to, owned by this record (closed with the run's status when it ends)."""
        self.trackers = Trackers(names, self.folder, self.folder.name, config,
                                 on_locations=lambda where: self.update(trackers=where))
        return self.trackers

    def arguments_text(self) -> str:
        """The resolved config in the style of a `TrainingArguments(...)` dump, secrets replaced."""
        return format_arguments(self.manifest.get("kind", "run"), self.manifest.get("config") or {})

    def save(self) -> None:
        _atomic_write_json(self.folder / MANIFEST, redact(self.manifest))

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.save()

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """One row of metrics.jsonl, and the same numbers to every tracker."""
        self._metrics.write(json.dumps(metrics) + "\n")
        self._metrics.flush()
        if "step" in metrics:
            self.trackers.log(metrics, metrics["step"])

    def add_samples(self, step: int, samples: list[tuple[str, str]]) -> None:
        with open(self.folder / "samples.md", "a", encoding="utf-8") as handle:
            handle.write(f"## step {step}\n\n")
            for prompt, text in samples:
                handle.write(redact_text(f"**{prompt or '(no prompt)'}**\n\n{text}\n\n"))


class NullRecord:
    """The record on a process that does not write one (ranks other than 0): the same methods, doing nothing, so a
    misspelled call fails on every rank alike."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.trackers = NullTrackers()
        self.summary = None

    def __enter__(self) -> "NullRecord":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        return False

    def finish(self, status: str, **fields: Any) -> None:
        pass

    def open_trackers(self, names: list[str], config: dict) -> NullTrackers:
        return self.trackers

    def arguments_text(self) -> str:
        return ""

    def update(self, **fields: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        pass

    def add_samples(self, step: int, samples: list[tuple[str, str]]) -> None:
        pass
