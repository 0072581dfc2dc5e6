"""Fine-tuning runs keep the same run folder as pretraining: manifest.json, metrics.jsonl, model/.

The Trainer's logs reach metrics.jsonl through a `TrainerCallback`. The fully resolved arguments go into the
manifest (flat under `train`, so `--config runs/X/manifest.json` reproduces a run) and into arguments.txt in the
records' `TrainingArguments(...)` style; babyllama.records.redact replaces every token and secret.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from babyllama.records.run import NullRecord, RunRecord, default_run_name
from babyllama.records.trackers import hf_tracker_environment
from babyllama.train.distributed import Distributed
from babyllama.tune.args import resolved_dict


def start_record(kind: str, tune, config, parent: dict, extra: dict):
    """(record, run name): the run folder, locked by the main process; NullRecord on the others. Use the record
    as a context manager around the training: it marks the run completed, failed or interrupted."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        config.world_size  # noqa: B018 - reading it sets up the Trainer's process group (accelerate launch, torchrun)
    group = Distributed.current()
    run_name = group.broadcast(config.run_name or default_run_name())  # a timestamp: every process takes rank 0's
    run_dir = Path(config.output_dir) / run_name
    # transformers' own trackers (report_to) write where the native loop's do: the run folder, the runs' MLflow store.
    report_to = config.report_to if isinstance(config.report_to, list) else [config.report_to or "none"]
    trackers = hf_tracker_environment(report_to, run_dir)
    if not group.is_main:  # one run folder, written by the main process only
        return NullRecord(run_dir), run_name
    values = {**resolved_dict(tune), **resolved_dict(config), "run_name": run_name}
    inputs = tuple(p for p in (parent.get("path"), parent.get("model"), tune.data) if p)
    record = RunRecord.start(config.output_dir, run_name, kind, {"train": values},
                             overwrite=tune.overwrite_output_dir, parent=parent.get("path") or parent.get("model"),
                             extra={"parent_run": parent, **({"trackers": trackers} if trackers else {}), **extra},
                             inputs=inputs)
    return record, run_name


def metrics_callback(record, max_time=None, agree=None):
    """A TrainerCallback that appends every log (train and eval) to the run's metrics.jsonl, and stops training
    once max_time seconds have passed (the trainer then saves and finishes normally).

    With several processes the main process's clock decides for all (agree: rank 0's value on every rank), so
    no rank stops a step before the others and leaves them waiting in a collective.
    """
    from transformers import TrainerCallback

    agree = agree or Distributed.current().broadcast

    class RunRecordCallback(TrainerCallback):
        def __init__(self):
            self.started = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            if max_time is not None and agree(time.time() - self.started >= max_time):
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time() - self.started, 3)}
            entry.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str, bool)) or v is None})
            record.log_metrics(entry)

    return RunRecordCallback()
