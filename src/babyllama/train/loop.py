"""The native pretraining loop, visible top to bottom.

setup (config, data, model, optimizer, run record) -> for each step: schedule, micro-batches, clip, update
-> log / evaluate / checkpoint -> final evaluation, checkpoint and Hugging Face model in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from babyllama.config import ModelConfig, TrainConfig, preset_model, to_dict
from babyllama.data.batches import BatchPlan, WindowSampler
from babyllama.data.shards import PretokenizedData
from babyllama.errors import BabyLlamaError
from babyllama.evals.loss import evaluate
from babyllama.infer.generate import generate
from babyllama.model import Llama
from babyllama.records.run import RunRecord, check_run_name, default_run_name
from babyllama.records.trackers import open_trackers
from babyllama.train import checkpoint as ckpt
from babyllama.train import faults
from babyllama.train.distributed import Distributed, Silent, env_world_size, fit_global_batch
from babyllama.train.resources import preflight
from babyllama.train.fastpaths import BatchLoader
from babyllama.train.nonfinite import NonFiniteGuard
from babyllama.train.step import OptimizerStep
from babyllama.train.device import Precision, choose_precision, peak_flops, resolve_device, synchronize
from babyllama.train.optim import build_optimizer, learning_rate_at
from babyllama.train.memory import guard_out_of_memory
from babyllama.train.recipes import recipe_for

SAMPLE_PROMPTS = ("Once upon a time", "")
# Options that may change when a run is resumed; anything else would break "continue as if never stopped".
RESUMABLE_OVERRIDES = {"max_steps", "max_time", "logging_steps", "eval_steps", "save_steps", "save_total_limit",
                       "report_to", "disable_tqdm", "device", "loss_impl", "num_samples", "sample_max_new_tokens",
                       "eval_max_tokens", "per_device_eval_batch_size", "resume_from_checkpoint", "data",
                       "max_consecutive_nonfinite", "stop_timeout", "fsdp", "gradient_checkpointing"}


# --------------------------------------------------------------------------- configuration


def _check_positive(cfg: TrainConfig) -> None:
    rules = {
        "per_device_train_batch_size": cfg.per_device_train_batch_size, "seq_len": cfg.seq_len,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "learning_rate": cfg.learning_rate,
        "logging_steps": cfg.logging_steps, "num_train_epochs": cfg.num_train_epochs,
        "max_consecutive_nonfinite": cfg.max_consecutive_nonfinite, "stop_timeout": cfg.stop_timeout,
    }
    for optional in ("eval_steps", "save_steps", "max_time", "per_device_eval_batch_size", "eval_max_tokens"):
        if getattr(cfg, optional) is not None:
            rules[optional] = getattr(cfg, optional)
    for name, value in rules.items():
        if value is None or not value > 0 or math.isinf(value):  # `not >` also catches NaN
            raise BabyLlamaError(f"--{name} must be a positive finite number, got {value}")
    if cfg.warmup_steps < 0 or (cfg.warmup_ratio is not None and not 0 <= cfg.warmup_ratio < 1):
        raise BabyLlamaError("--warmup_steps must be >= 0 and --warmup_ratio in [0, 1)")
    if cfg.weight_decay < 0 or cfg.max_grad_norm < 0 or not 0 <= cfg.min_lr_ratio <= 1:
        raise BabyLlamaError("--weight_decay and --max_grad_norm must be >= 0, --min_lr_ratio in [0, 1]")
    for beta_name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(cfg, beta_name) < 1:
            raise BabyLlamaError(f"--{beta_name} must be in [0, 1), got {getattr(cfg, beta_name)}")
    from babyllama.config import TRACKERS
    from babyllama.errors import did_you_mean

    for tracker in cfg.report_to:
        if tracker not in TRACKERS and tracker != "all":
            raise BabyLlamaError(f"--report_to '{tracker}' is not a tracker{did_you_mean(tracker, TRACKERS)}; "
                                 f"choose from {', '.join(TRACKERS)}")


@dataclass
class Plan:
    """Everything resolved before the first step."""

    train: TrainConfig
    model: ModelConfig
    device: torch.device
    precision: Precision
    run_dir: Path
    resume_from: Optional[Path] = None
    state: dict = field(default_factory=dict)  # trainer state of the checkpoint we resume from
    notes: list = field(default_factory=list)  # what a resume changed (e.g. the number of processes), said at start


def _model_config(cfg: TrainConfig, model_values: dict, vocab_size: int) -> ModelConfig:
    values = preset_model(cfg.preset)
    values.update(model_values)
    if values.get("vocab_size", 0) in (0, None):
        values["vocab_size"] = vocab_size
    elif values["vocab_size"] < vocab_size:
        raise BabyLlamaError(f"--vocab_size {values['vocab_size']} is smaller than the tokenizer's {vocab_size} tokens")
    config = ModelConfig(**values)
    config.validate()
    return config


def plan_run(train_values: dict[str, Any], model_values: dict[str, Any]) -> Plan:
    resume_path = train_values.get("resume_from_checkpoint")
    if resume_path:
        checkpoint = ckpt.resolve_checkpoint(resume_path)
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        saved_train, saved_model = state["config"]["train"], state["config"]["model"]
        for key, value in model_values.items():
            if saved_model.get(key) != value:
                raise BabyLlamaError(f"cannot resume with a changed model shape: {key} was {saved_model.get(key)}, "
                                     f"now {value}. Start a new run (or --init_from {checkpoint}) instead")
        # Another number of processes is fine while the global batch stays (accumulation adapts; distributed.py).
        batch_values, batch_note = fit_global_batch(saved_train, train_values, state.get("world_size", 1),
                                                    env_world_size())
        train_values = {**train_values, **batch_values}
        changed = {k for k, v in train_values.items() if saved_train.get(k) != v} - RESUMABLE_OVERRIDES \
            - set(batch_values)
        if changed:
            raise BabyLlamaError(f"cannot change {', '.join(sorted(changed))} when resuming: the run would not "
                                 f"continue as if it had not stopped. Start a new run with --init_from {checkpoint}")
        cfg = TrainConfig(**{**saved_train, **train_values})
        model = ModelConfig(**saved_model)
        device = resolve_device(cfg.device)
        return Plan(cfg, model, device, choose_precision(device, cfg.bf16, cfg.fp16),
                    checkpoint.parent.parent, checkpoint, state, [batch_note] if batch_note else [])

    cfg = TrainConfig(**train_values)
    if not cfg.data:
        raise BabyLlamaError("--data is required: a folder made by `babyllama prepare` (e.g. --data data/ts-512)")
    device = resolve_device(cfg.device)
    for key, value in recipe_for(cfg.preset, device.type).items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    if cfg.warmup_ratio is None:
        cfg.warmup_ratio = 0.0
    _check_positive(cfg)
    cfg.run_name = check_run_name(cfg.run_name or default_run_name())  # before anything is written
    data = PretokenizedData(cfg.data)
    if cfg.init_from:
        from babyllama.modelio import load_model

        source, tokenizer, _ = load_model(cfg.init_from, need_tokenizer=False)
        if tokenizer is not None and tokenizer.hash != data.tokenizer.hash:
            raise BabyLlamaError(f"--init_from {cfg.init_from} uses a different tokenizer than --data {cfg.data}; "
                                 f"prepare the data with --tokenizer {cfg.init_from}")
        model = dataclasses.replace(source.config, **model_values)
    else:
        model = _model_config(cfg, model_values, data.tokenizer.vocab_size)
    if cfg.seq_len > model.max_seq_len:
        raise BabyLlamaError(f"--seq_len {cfg.seq_len} is beyond the model's context (max_seq_len "
                             f"{model.max_seq_len}); lower --seq_len or raise --max_seq_len")
    precision = choose_precision(device, cfg.bf16, cfg.fp16)
    cfg.bf16 = precision.dtype == torch.bfloat16
    cfg.fp16 = precision.dtype == torch.float16  # 7.x GPUs default to fp16; a resumed run must keep it
    return Plan(cfg, model, device, precision, Path(cfg.output_dir) / cfg.run_name)


# --------------------------------------------------------------------------- the loop


class StopRequest:
    """SIGINT/SIGTERM ask the loop to finish its step and checkpoint; a second Ctrl-C stops at once.

    Exit statuses: 130 after SIGINT, 143 after SIGTERM (128 + signal number, as shells report them). If the step
    and checkpoint take longer than `timeout` seconds, the process exits at once with the same status: the
    previous checkpoint is complete (saves are atomic), so a scheduler's grace period is never overrun.
    """

    def __init__(self, timeout: Optional[float] = None, on_timeout: Optional[Callable[[str], None]] = None):
        self.requested: Optional[str] = None
        self._previous: dict = {}
        self.timeout, self.on_timeout = timeout, on_timeout
        self._timer: Optional[threading.Timer] = None

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if self.timeout and self._timer is None:
            self._timer = threading.Timer(self.timeout, self._force_exit)
            self._timer.daemon = True
            self._timer.start()

    def _force_exit(self):
        message = (f"{self.requested}: the step and checkpoint did not finish within --stop_timeout "
                   f"{self.timeout:g}s; exiting now (the previous checkpoint is complete)")
        try:
            print(message, file=sys.stderr, flush=True)
            if self.on_timeout:
                self.on_timeout(message)
        finally:
            os._exit(130 if self.requested == "SIGINT" else 143)

    def __exit__(self, *exc):
        if self._timer is not None:
            self._timer.cancel()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class TimeBudget:
    """Fits the number of steps to --max_time from measured step times (and the overhead of evaluations)."""

    def __init__(self, seconds: float, spent: float):
        self.seconds, self.spent_before = seconds, spent
        self.started = time.time()
        self.step_seconds: Optional[float] = None

    def elapsed(self) -> float:
        return self.spent_before + time.time() - self.started

    def observe(self, step_seconds: float) -> None:
        # Exponential average; the first (compiling, warming) steps are replaced quickly.
        self.step_seconds = step_seconds if self.step_seconds is None else 0.9 * self.step_seconds + 0.1 * step_seconds

    def total_steps(self, step: int, reserve: float) -> int:
        if self.step_seconds is None:
            return step + 1000
        left = max(0.0, self.seconds - self.elapsed() - reserve)
        return step + int(left / self.step_seconds)


def pretrain(train_values: dict[str, Any], model_values: dict[str, Any], log: Callable[[str], None] = print) -> Path:
    plan = plan_run(train_values, model_values)
    cfg, device, precision = plan.train, plan.device, plan.precision
    # Under torchrun: join the process group (gloo on CPU, NCCL on GPU) and take this rank's GPU.
    dist, device = Distributed.start(device)
    plan.device = precision.device = device
    if dist.active:
        cfg.run_name = dist.broadcast(cfg.run_name)  # the default name is a timestamp: take rank 0's
        if not plan.resume_from:
            plan.run_dir = Path(cfg.output_dir) / cfg.run_name
        if not dist.is_main:  # rank 0 alone speaks and writes
            log, cfg.disable_tqdm = (lambda _: None), True
    for note in plan.notes:
        log(note)
    data = PretokenizedData(cfg.data)
    tokenizer = data.tokenizer
    if tokenizer.vocab_size > plan.model.vocab_size:
        raise BabyLlamaError(f"the data's tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is "
                             f"{plan.model.vocab_size}")
    if plan.state and plan.state.get("data_fingerprint") not in (None, data.fingerprint):
        log("warning: the prepared data changed since this run started; the data order will differ")

    torch.manual_seed(cfg.seed)
    model = Llama(plan.model).to(device)
    model.loss_impl = cfg.loss_impl  # same loss either way; only speed and memory differ (babyllama/ops)
    model.gradient_checkpointing = bool(cfg.gradient_checkpointing)  # recompute blocks in backward (less memory)
    if cfg.init_from and not plan.resume_from:
        from babyllama.modelio import load_model

        source = load_model(cfg.init_from, need_tokenizer=False)[0]
        model.load_state_dict(source.state_dict())
    if plan.resume_from:  # whole weights go in before FSDP shards them
        from babyllama.modelio import load_model

        model.load_state_dict(load_model(plan.resume_from, need_tokenizer=False)[0].state_dict())
    if cfg.fsdp and not dist.active:
        log("--fsdp true: a single process has nothing to shard; training unsharded")
    trained = dist.wrap(model, device, cfg.fsdp)  # DDP around the model, or the model sharded in place (FSDP)
    if dist.active:
        torch.manual_seed(cfg.seed + dist.rank)  # same weights on every rank (above), own dropout stream per rank
    optimizer = build_optimizer(model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, device=device)
    scaler = torch.amp.GradScaler(device.type) if precision.dtype == torch.float16 else None
    step, tokens_seen, spent, skipped = 0, 0, 0.0, 0
    best: dict[str, Any] = {}
    if plan.resume_from:
        _, optimizer_state, rng = ckpt.load_training_state(plan.resume_from)
        dist.load_optimizer(optimizer, optimizer_state)
        rng, rng_note = dist.own_rng(rng)
        _restore_rng(rng, device)
        if rng_note:
            log(rng_note)
        step, tokens_seen = plan.state["step"], plan.state["tokens_seen"]
        spent, skipped, best = plan.state.get("elapsed_seconds", 0.0), plan.state.get("skipped_steps", 0), \
            plan.state.get("best", {})
        log(f"resuming {plan.run_dir} from {plan.resume_from.name} (step {step}, {tokens_seen:,} tokens)")

    compiled = torch.compile(trained) if cfg.torch_compile else trained
    sampler = WindowSampler(data.tokens("train"), cfg.seq_len, cfg.seed)
    batches = BatchPlan(cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, dist.world_size, dist.rank)
    load_batch = BatchLoader(sampler, batches, device)
    tokens_per_step = batches.global_batch * cfg.seq_len
    valid_tokens = data.tokens("valid")
    byte_lengths = tokenizer.token_byte_lengths()
    flops_per_token = model.flops_per_token(cfg.seq_len)
    peak = peak_flops(device, precision)

    budget = TimeBudget(cfg.max_time, spent) if cfg.max_time else None
    if cfg.max_steps > 0:
        total_steps = cfg.max_steps
    elif budget:
        total_steps = budget.total_steps(step, 0)
    else:
        total_steps = max(1, int(cfg.num_train_epochs * sampler.windows_per_epoch / batches.global_batch))
    eval_every = cfg.eval_steps or (None if budget else max(1, total_steps // 10))
    save_every = cfg.save_steps or eval_every

    # Before anything is written: fail now, not at the first save hours later.
    planned_saves = max(1, total_steps // save_every + 1) if save_every else 1
    dist.on_main(lambda: preflight(plan.run_dir, model.num_params(), cfg.save_total_limit, planned_saves,
                                   existing=len(ckpt.list_checkpoints(plan.run_dir)) if plan.resume_from else 0))
    config_record = {"train": to_dict(cfg), "model": to_dict(plan.model)}
    record = dist.on_main(lambda: RunRecord.start(
        cfg.output_dir if not plan.resume_from else str(plan.run_dir.parent),
        cfg.run_name if not plan.resume_from else plan.run_dir.name, "pretrain", config_record,
        overwrite=cfg.overwrite_output_dir, resume=plan.resume_from is not None,
        parent=cfg.init_from,
        extra={"data": {"folder": str(cfg.data), "fingerprint": data.fingerprint, "origin": data.manifest["origin"],
                        "train_tokens": int(len(sampler.tokens)), "valid_tokens": int(len(valid_tokens))},
               "tokenizer": {"hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size},
               "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda"
                          else "cpu", "precision": precision.name, "threads": torch.get_num_threads()},
               "model_parameters": model.num_params()}))
    if not dist.is_main:
        record = Silent(plan.run_dir)
    elif dist.active:
        record.update(distributed={"world_size": dist.world_size, "backend": dist.backend, "fsdp": dist.fsdp})
    run_dir = record.folder
    log(record.arguments_text().rstrip())  # the resolved arguments, secrets replaced (also in arguments.txt)
    trackers = dist.on_main(lambda: open_trackers(cfg.report_to, run_dir, run_dir.name, config_record))
    if not dist.is_main:
        trackers = Silent()
    if dist.is_main and not (run_dir / "tokenizer").exists():
        shutil.copytree(data.folder / "tokenizer", run_dir / "tokenizer")

    log(f"run {run_dir}: {plan.model.n_layers} layers x {plan.model.dim} dim, {model.num_params():,} parameters, "
        f"vocab {plan.model.vocab_size}; {device.type} {precision.name}"
        f"{' compiled' if cfg.torch_compile else ''}; batch {batches.micro_batch} x {cfg.gradient_accumulation_steps} "
        f"accumulation x {batches.world_size} process{'es' if batches.world_size > 1 else ''} = "
        f"{batches.global_batch} sequences of {cfg.seq_len} "
        f"({tokens_per_step:,} tokens) per step; lr {cfg.learning_rate:g} {cfg.lr_scheduler_type}; "
        + (f"{cfg.max_time:g}s budget" if budget and cfg.max_steps <= 0 else f"{total_steps} steps"))

    def trainer_state() -> dict:
        return {"step": step, "tokens_seen": tokens_seen, "elapsed_seconds": budget.elapsed() if budget else
                spent + time.time() - started, "skipped_steps": guard.skipped, "best": best,
                "total_steps": total_steps,
                "config": config_record, "data_fingerprint": data.fingerprint, "world_size": dist.world_size}

    def run_eval() -> dict:
        metrics = evaluate(model, valid_tokens, cfg.seq_len, cfg.per_device_eval_batch_size or
                           cfg.per_device_train_batch_size, byte_lengths, device, precision.autocast,
                           cfg.eval_max_tokens)
        if not best or metrics["eval_loss"] < best.get("eval_loss", float("inf")):
            best.update({**metrics, "step": step})
        if cfg.num_samples:
            prompts = [SAMPLE_PROMPTS[i % len(SAMPLE_PROMPTS)] for i in range(cfg.num_samples)]
            ids = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
            out = generate(model, ids, cfg.sample_max_new_tokens, temperature=0.8, top_p=0.95, seed=step,
                           eos_id=tokenizer.eos_id, autocast=precision.autocast)
            record.add_samples(step, [(p, p + tokenizer.decode(o)) for p, o in zip(prompts, out)])
        return metrics

    def save(final: bool = False) -> None:
        # Every rank takes part (FSDP gathers its shards, each rank's RNG is collected); rank 0 writes.
        whole_model, whole_optimizer = dist.gather_for_save(model, optimizer)
        rng, state = dist.rng_states(_rng_state(device)), trainer_state()

        def write_checkpoint() -> None:
            ckpt.save_checkpoint(run_dir, step, whole_model, whole_optimizer, state, rng)
            ckpt.prune_checkpoints(run_dir, cfg.save_total_limit)

        dist.on_main(write_checkpoint)

    from tqdm.auto import tqdm

    started = time.time()
    status, error = "completed", None
    final_metrics: dict[str, Any] = {}
    bar = tqdm(total=total_steps, initial=step, disable=cfg.disable_tqdm, unit="step", dynamic_ncols=True)
    write = bar.write if not cfg.disable_tqdm else log
    window_start, window_tokens, window_eval_seconds = time.time(), 0, 0.0
    loss_sum = torch.zeros((), device=device)
    loss_count = torch.zeros((), device=device)
    guard = NonFiniteGuard(optimizer, device, cfg.max_consecutive_nonfinite, resume_hint=str(run_dir),
                           skipped=skipped, scaler=scaler, on_device=not dist.fsdp)
    optimizer_step = OptimizerStep(forward=compiled, trained=trained, model=model, optimizer=optimizer, scaler=scaler,
                                   precision=precision, dist=dist, load_batch=load_batch,
                                   accumulation=batches.accumulation, max_grad_norm=cfg.max_grad_norm, guard=guard,
                                   device=device)
    optimizer_step = guard_out_of_memory(optimizer_step, device, cfg, precision.name)  # OOM: say what to lower
    previous_start, overhead = None, 0.0  # the last iteration's start and its evaluation/save seconds
    eval_seconds_each = 0.0
    next_eval_time = (cfg.max_time / 10) if budget and not eval_every else None
    model.train()
    try:
        with StopRequest(cfg.stop_timeout, lambda why: record.update(status="interrupted", error=why)) as stop:
            while step < total_steps:
                step_start = time.time()
                if budget and previous_start is not None and step > 2:  # the first steps compile and warm up
                    # The whole last iteration but its evaluation/save: the host queues steps ahead of the device,
                    # so the device's time shows up where the loop waits (at logging), not inside the step.
                    budget.observe(step_start - previous_start - overhead)
                previous_start, overhead = step_start, 0.0
                faults.point("train.step")
                lr = learning_rate_at(step, total_steps=total_steps, peak=cfg.learning_rate, kind=cfg.lr_scheduler_type,
                                      warmup_steps=cfg.warmup_steps or int(cfg.warmup_ratio * total_steps),
                                      min_ratio=cfg.min_lr_ratio)
                step_loss, grad_norm, finite = optimizer_step(step, lr)
                loss_sum += torch.where(finite, step_loss, 0.0)
                loss_count += finite
                step += 1
                tokens_seen += tokens_per_step
                window_tokens += tokens_per_step
                bar.update(1)
                if budget and cfg.max_steps <= 0:
                    total_steps = max(step, budget.total_steps(step, reserve=eval_seconds_each))
                    bar.total = total_steps
                time_due = next_eval_time is not None and budget.elapsed() >= next_eval_time
                # All ranks agree once per step: a signal on any rank stops every rank; rank 0's clock rules the
                # time budget (a no-op with one process).
                stopping, (total_steps, time_due) = dist.agree(stop.requested is not None, total_steps, time_due,
                                                               device=device)

                due_log = step % cfg.logging_steps == 0 or step == total_steps
                due_save = any(every and step % every == 0 for every in (cfg.save_steps, eval_every))
                if due_log or due_save or time_due or stopping or guard.due(step):
                    guard.check(step, write)  # before anything is logged or saved
                if due_log:
                    synchronize(device)
                    seconds = time.time() - window_start - window_eval_seconds
                    metrics = {"step": step, "loss": (loss_sum / loss_count.clamp(min=1)).item(), "learning_rate": lr,
                               "grad_norm": grad_norm.item(), "tokens_seen": tokens_seen,
                               "tokens_per_second": window_tokens / max(seconds, 1e-9),
                               "epoch": round(sampler.epoch_of(step * batches.global_batch), 4),
                               "elapsed_seconds": round(trainer_state()["elapsed_seconds"], 2)}
                    if peak:
                        metrics["mfu"] = metrics["tokens_per_second"] * flops_per_token / peak
                    if guard.skipped:
                        metrics["skipped_steps"] = guard.skipped
                    record.log_metrics(metrics)
                    trackers.log(metrics, step)
                    write(f"step {step:>6}/{total_steps} | loss {metrics['loss']:.4f} | lr {lr:.2e} | "
                          f"grad norm {metrics['grad_norm']:.3f} | {metrics['tokens_per_second']:,.0f} tok/s"
                          + (f" | MFU {metrics['mfu']:.1%}" if peak else ""))
                    loss_sum.zero_()
                    loss_count.zero_()
                    window_start, window_tokens, window_eval_seconds = time.time(), 0, 0.0

                due_eval = (eval_every and step % eval_every == 0) or time_due
                if due_eval and step < total_steps:
                    eval_start = time.time()
                    metrics = run_eval()
                    record.log_metrics({"step": step, **metrics, "tokens_seen": tokens_seen})
                    trackers.log(metrics, step)
                    write(f"step {step:>6} | eval loss {metrics['eval_loss']:.4f} | "
                          f"bits/byte {metrics['eval_bpb']:.4f} | perplexity {metrics['eval_perplexity']:.2f}")
                    if next_eval_time is not None:
                        next_eval_time += cfg.max_time / 10
                    if (cfg.save_steps is None) or (save_every and step % save_every == 0):
                        save()
                    eval_seconds_each = time.time() - eval_start
                    window_eval_seconds += eval_seconds_each
                    overhead += eval_seconds_each
                elif cfg.save_steps and step % cfg.save_steps == 0 and step < total_steps:
                    save_start = time.time()
                    save()
                    window_eval_seconds += time.time() - save_start
                    overhead += time.time() - save_start

                if stopping:
                    write(f"{stop.requested or 'a stop request on another process'} received: checkpointing at "
                          f"step {step} and stopping")
                    save()
                    status = "interrupted"
                    break
        if status == "completed":
            final_metrics = run_eval()
            record.log_metrics({"step": step, **final_metrics, "tokens_seen": tokens_seen})
            trackers.log(final_metrics, step)
            save()
            from babyllama.modelio import save_model

            whole_model = dist.gather_for_save(model, optimizer)[0]
            dist.on_main(lambda: save_model(whole_model, run_dir / "model", tokenizer))
            write(f"done: step {step}, eval loss {final_metrics['eval_loss']:.4f}, "
                  f"bits/byte {final_metrics['eval_bpb']:.4f}, model in {run_dir / 'model'}")
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as err:
        status, error = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        bar.close()
        trackers.close(status)
        record.finish(status, error=error, final_metrics=final_metrics, best_metrics=best, step=step,
                      tokens_seen=tokens_seen, skipped_steps=guard.flush(),
                      checkpoints=[str(p) for p in ckpt.list_checkpoints(run_dir)],
                      model_path=str(run_dir / "model") if status == "completed" else None)
    if status == "interrupted":
        raise SystemExit(130 if stop.requested == "SIGINT" else 143)
    return run_dir
