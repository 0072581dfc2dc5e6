"""Fine-tuning runs keep the same run folder as pretraining: manifest.json, metrics.jsonl, model/.

The Trainer's logs reach metrics.jsonl through a `TrainerCallback`. The fully resolved arguments go into the
manifest (flat under `train`, so `--config runs/X/manifest.json` reproduces a run) and into arguments.txt in the
records' `TrainingArguments(...)` style; babyllama.records.redact replaces every token and secret.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from babyllama.tune.args import resolved_dict


def start_record(kind: str, tune, config, parent: dict, extra: dict):
    from babyllama.records.run import RunRecord, default_run_name

    run_name = config.run_name or default_run_name()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and config.world_size > 1:  # accelerate launch / torchrun
        from babyllama.train.distributed import Silent, agree_with_main

        run_name = agree_with_main(run_name)  # the default is a timestamp: every process takes rank 0's
        if config.process_index != 0:  # one run folder, written by the main process only
            return Silent(Path(config.output_dir) / run_name), run_name
    values = {**resolved_dict(tune), **resolved_dict(config), "run_name": run_name}
    record = RunRecord.start(config.output_dir, run_name, kind, {"train": values},
                             overwrite=tune.overwrite_output_dir, parent=parent.get("path") or parent.get("model"),
                             extra={"parent_run": parent, **extra})
    return record, run_name


@contextmanager
def marked_on_failure(record):
    """Training inside the block; an interrupt or error marks the run record interrupted or failed."""
    try:
        yield
    except KeyboardInterrupt:
        record.finish("interrupted")
        raise
    except BaseException:
        record.finish("failed")
        raise


def metrics_callback(record, max_time=None, agree=None):
    """A TrainerCallback that appends every log (train and eval) to the run's metrics.jsonl, and stops training
    once max_time seconds have passed (the trainer then saves and finishes normally).

    With several processes the main process's clock decides for all (agree: rank 0's value on every rank), so
    no rank stops a step before the others and leaves them waiting in a collective.
    """
    from transformers import TrainerCallback

    from babyllama.train.distributed import agree_with_main

    agree = agree or agree_with_main

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
