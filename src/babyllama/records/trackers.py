"""Experiment trackers (`--report_to`): the same metrics the run folder gets, sent where the user looks.

    tensorboard  event files in <run>/tensorboard            (tensorboard --logdir runs)
    wandb        offline by default, no account needed       (<run>/wandb/offline-run-*; `wandb sync` it later);
                 WANDB_MODE=online logs live to the user's account
    mlflow       MLFLOW_TRACKING_URI, else a local SQLite store next to the runs (runs/mlflow.db)
    trackio      trackio's local store (TRACKIO_DIR, default ~/.cache/huggingface/trackio), project "babyllama"

Metric names follow transformers' `report_to` convention (train/loss, train/learning_rate, eval/loss ...), identical in
every tracker, so pretraining and fine-tuning runs line up on one dashboard. Each package is imported only when asked
for. Where each tracker put the run is recorded in the manifest ("trackers"), so `runs show` can point at it and a
resumed run continues in the same tracker run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from babyllama.errors import BabyLlamaError, did_you_mean
from babyllama.records.arguments import format_arguments
from babyllama.records.redact import redact, redact_argv, redact_text

PROJECT = "babyllama"
# tracker -> (module to import, pip package)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "mlflow": ("mlflow", "mlflow"), "trackio": ("trackio", "trackio")}
STATUS = {"completed": 0, "failed": 1, "interrupted": 130}


def tracker_metric_names(metrics: dict[str, Any]) -> dict[str, float]:
    """Run-folder names -> tracker names, as transformers rewrites them: eval_loss -> eval/loss, loss -> train/loss."""
    out = {}
    for key, value in metrics.items():
        if key == "step" or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        out[f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"] = float(value)
    return out


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def require(tracker: str):
    """Import a tracker's package, or say which pip package is missing."""
    module_name, package = PACKAGES[tracker]
    if importlib.util.find_spec(module_name) is None:
        raise BabyLlamaError(f"--report_to {tracker} needs the '{package}' package: pip install {package} "
                             f"(or pip install 'babyllama[trackers]' for all trackers)")
    return importlib.import_module(module_name)


@contextmanager
def _redacted_argv():
    """Trackers record sys.argv themselves (wandb's metadata); give them the redacted command line."""
    saved = sys.argv
    sys.argv = redact_argv(saved)
    try:
        yield
    finally:
        sys.argv = saved


class TensorBoardTracker:
    def __init__(self, run_dir: Path, run_name: str, config: dict, previous: dict):
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        if not previous:
            self.writer.add_text("arguments", "```\n" + format_arguments(config.get("_kind", "run"), _config(config))
                                 + "\n```")
        self.location = {"log_dir": str(self.log_dir), "view": f"tensorboard --logdir {run_dir.parent}"}

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: Path, run_name: str, config: dict, previous: dict):
        wandb = require("wandb")
        mode = os.environ.get("WANDB_MODE", "offline")  # no account needed unless the user asks for online
        kwargs = dict(mode=mode, dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_name,
                      config=redact(_config(config)), job_type=config.get("_kind"),
                      settings=wandb.Settings(silent=True, console="off"))
        if previous.get("run_id"):
            kwargs.update(id=previous["run_id"], resume="allow")
        with _redacted_argv():
            self.run = wandb.init(**kwargs)
        self.location = {"mode": mode, "project": self.run.project, "run_id": self.run.id,
                         "dir": str(Path(self.run.dir).parent)}
        if mode == "offline":
            self.location["sync"] = f"wandb sync {self.location['dir']}"
        else:
            self.location["url"] = self.run.url

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=STATUS.get(status, 1))


class MLflowTracker:
    MAX_PARAM_LENGTH = 6000

    def __init__(self, run_dir: Path, run_name: str, config: dict, previous: dict):
        require("mlflow")
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        local = not os.environ.get("MLFLOW_TRACKING_URI")
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir.parent.resolve() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            artifacts = (run_dir.parent.resolve() / "mlartifacts").as_uri() if local else None
            experiment_id = self.client.create_experiment(experiment_name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        if previous.get("run_id"):
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=run_name,
                                         tags={"babyllama.kind": str(config.get("_kind")),
                                               "babyllama.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
            params = [Param(k, redact_text(str(v))[:self.MAX_PARAM_LENGTH])
                      for k, v in flatten(redact(_config(config))).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.location = {"tracking_uri": redact_text(uri), "experiment": experiment_name, "run_id": self.run_id}
        if local:
            self.location["view"] = f"mlflow ui --backend-store-uri {uri}"

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"))


class TrackioTracker:
    def __init__(self, run_dir: Path, run_name: str, config: dict, previous: dict):
        trackio = require("trackio")
        from trackio.utils import TRACKIO_DIR

        self.trackio = trackio
        project = os.environ.get("TRACKIO_PROJECT", PROJECT)
        self.run = trackio.init(project=project, name=run_name, config=flatten(redact(_config(config))),
                                resume="allow" if previous else "never", embed=False)
        self.location = {"project": project, "run": run_name, "dir": str(TRACKIO_DIR),
                         "view": f"trackio show --project {project}"}

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self, status: str) -> None:
        self.trackio.finish()


BACKENDS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MLflowTracker,
            "trackio": TrackioTracker}


def _config(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def resolve_names(names: list[str]) -> list[str]:
    """'none' drops out; 'all' means every tracker whose package is installed (as in transformers)."""
    chosen: list[str] = []
    for name in names:
        if name == "none":
            continue
        if name == "all":
            chosen += [t for t, (module, _) in PACKAGES.items() if importlib.util.find_spec(module)]
        elif name not in BACKENDS:
            raise BabyLlamaError(f"--report_to '{name}' is not a tracker{did_you_mean(name, BACKENDS)}; "
                                 f"choose from none, all, {', '.join(BACKENDS)}")
        else:
            chosen.append(name)
    return list(dict.fromkeys(chosen))


class Trackers:
    """Fan-out to every tracker named in report_to. A tracker that fails while logging is reported once and
    dropped: the run folder stays the record, and a tracker hiccup must not cost a training run."""

    def __init__(self, names: list[str], run_dir: Path, run_name: str, config: dict[str, Any],
                 kind: Optional[str] = None, warn=None, on_locations=None):
        self.run_dir = Path(run_dir)
        self.names = resolve_names(list(names))
        self.warn = warn or (lambda text: print(text, file=sys.stderr))
        self.active: dict[str, Any] = {}
        manifest = _read_manifest(self.run_dir)
        kind = kind or manifest.get("kind", "run")
        previous = manifest.get("trackers") or {}
        try:
            for name in self.names:
                self.active[name] = BACKENDS[name](self.run_dir, run_name, {**config, "_kind": kind},
                                                   previous.get(name) or {})
        except BabyLlamaError:
            self.close("failed")  # the run cannot start; its record (the caller's) marks it failed
            raise
        except Exception as err:  # a tracker's own error (bad URI, unreachable server ...): say which one
            self.close("failed")
            raise BabyLlamaError(f"--report_to {name}: could not start the tracker: {redact_text(str(err))}") from None
        self.locations = {name: tracker.location for name, tracker in self.active.items()}
        if self.locations:
            # Into the manifest (the run's record passes on_locations: it rewrites the manifest at the end).
            (on_locations or (lambda where: _record_locations(self.run_dir, where)))(self.locations)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        named = tracker_metric_names(metrics)
        for name, tracker in list(self.active.items()):
            try:
                tracker.log(named, step)
            except Exception as err:
                self.warn(f"warning: tracker {name} failed ({redact_text(str(err))}); it gets no more metrics")
                self.active.pop(name)

    def close(self, status: str) -> None:
        for name, tracker in list(self.active.items()):
            try:
                tracker.close(status)
            except Exception as err:
                self.warn(f"warning: tracker {name} did not close cleanly: {redact_text(str(err))}")
        self.active.clear()


def _read_manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _record_locations(run_dir: Path, locations: dict) -> None:
    """Add the trackers' locations to a manifest no record of this process holds."""
    manifest = _read_manifest(run_dir)
    if manifest:
        manifest["trackers"] = locations
        tmp = run_dir / ".manifest.json.tmp"
        tmp.write_text(json.dumps(redact(manifest), indent=2, default=str))
        os.replace(tmp, run_dir / "manifest.json")


class NullTrackers:
    """No trackers (a rank that does not record, or a record before --report_to opened any)."""

    locations: dict = {}

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def hf_tracker_environment(names: list[str], run_dir: Path) -> dict[str, dict]:
    """For fine-tuning through transformers' `report_to`: point its callbacks at the same places the native loop
    uses (offline wandb in the run folder, TensorBoard in <run>/tensorboard, the runs' local MLflow store, trackio's
    local store), by environment variables the user has not set already. Returns the locations for the manifest.
    transformers names metrics train/loss, eval/loss ... in TensorBoard, wandb and trackio as the native loop does;
    its MLflow callback keeps the raw names (loss, eval_loss)."""
    run_dir = Path(run_dir)
    names = resolve_names(list(names))
    for name in names:
        require(name)
    locations: dict[str, dict] = {}
    if "tensorboard" in names:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))
        locations["tensorboard"] = {"log_dir": os.environ["TENSORBOARD_LOGGING_DIR"],
                                    "view": f"tensorboard --logdir {run_dir.parent}"}
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.environ.setdefault("WANDB_PROJECT", PROJECT)
        locations["wandb"] = {"mode": os.environ["WANDB_MODE"], "project": os.environ["WANDB_PROJECT"],
                              "dir": str(Path(os.environ["WANDB_DIR"]) / "wandb")}
    if "mlflow" in names:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{run_dir.parent.resolve() / 'mlflow.db'}")
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", PROJECT)
        locations["mlflow"] = {"tracking_uri": redact_text(os.environ["MLFLOW_TRACKING_URI"]),
                               "experiment": os.environ["MLFLOW_EXPERIMENT_NAME"]}
    if "trackio" in names:
        locations["trackio"] = {"dir": os.environ.get("TRACKIO_DIR", "~/.cache/huggingface/trackio")}
    return locations


def open_trackers(names: list[str], run_dir: Path, run_name: str, config: dict[str, Any]) -> Trackers:
    return Trackers(names, run_dir, run_name, config)
