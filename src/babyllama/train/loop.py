"""The native pretraining loop, visible top to bottom.

plan (train/plan.py) -> build the components -> for each step: learning rate, optimizer step, agree between
processes, then log / evaluate / save as the cadence says -> final evaluation, checkpoint and model in the run folder.

The components, one job each: TrainState (what the run has done, resumable), Cadence (when to stop, log,
evaluate and save, and where the schedule stands), MetricsWindow (loss and throughput between logs),
OptimizerStep + NonFiniteGuard (one guarded update), Evaluator, Checkpointer, and the RunRecord, which owns the
run folder's lock and trackers and marks how the run ended.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from tqdm.auto import tqdm

from babyllama.config import to_dict
from babyllama.data.batches import BatchPlan, WindowSampler
from babyllama.data.mixture import MixtureSampler
from babyllama.export.card import write_model_card
from babyllama.layout import RunFolder, list_checkpoints
from babyllama.model import Llama
from babyllama.records.run import NullRecord, RunRecord
from babyllama.train import checkpoint as ckpt
from babyllama.train import faults
from babyllama.train.cadence import Cadence, training_context
from babyllama.train.device import peak_flops
from babyllama.train.distributed import Distributed
from babyllama.train.evaluation import Evaluator, eval_line
from babyllama.train.fastpaths import BatchLoader
from babyllama.train.metrics import MetricsWindow, log_line
from babyllama.train.memory import guard_out_of_memory
from babyllama.train.nonfinite import NonFiniteGuard
from babyllama.train.optim import build_optimizer, learning_rate_for
from babyllama.train.plan import Plan, plan_run
from babyllama.train.resources import preflight
from babyllama.train.saving import Checkpointer, restore_rng
from babyllama.train.signals import StopRequest
from babyllama.train.state import TrainState
from babyllama.train.step import OptimizerStep


@dataclass
class Training:
    """One run's components, built from its plan."""

    plan: Plan
    dist: Distributed
    model: Llama
    step: OptimizerStep
    guard: NonFiniteGuard
    state: TrainState
    cadence: Cadence
    window: MetricsWindow
    sampler: WindowSampler | MixtureSampler
    batches: BatchPlan
    log: Callable[[str], None]
    record: Any = None  # RunRecord, or NullRecord where this process does not record
    evaluate: Optional[Evaluator] = None
    checkpointer: Optional[Checkpointer] = None
    final_metrics: Optional[dict] = None
    model_path: Optional[Path] = None

    @property
    def tokens_per_step(self) -> int:
        return self.batches.global_batch * self.plan.train.seq_len

    def trainer_state(self) -> dict[str, Any]:
        """Everything resumable besides weights, optimizer and RNG (trainer_state.json)."""
        return {**self.state.state_dict(), "skipped_steps": self.guard.skipped,
                "total_steps": self.cadence.total or self.state.step, "cadence": self.cadence.state_dict(),
                "config": config_record(self.plan), "data_fingerprint": self.plan.data.fingerprint,
                "world_size": self.dist.world_size}

    def summary(self) -> dict[str, Any]:
        """What the run record keeps when the run ends, however it ends."""
        return {"final_metrics": self.final_metrics or {}, "best_metrics": self.state.best, "step": self.state.step,
                "tokens_seen": self.state.tokens_seen, "skipped_steps": self.guard.flush(),
                "checkpoints": [str(p) for p in list_checkpoints(self.plan.run_dir)],
                "model_path": str(self.model_path) if self.model_path else None}


def config_record(plan: Plan) -> dict:
    return {"train": to_dict(plan.train), "model": to_dict(plan.model)}


def join_processes(plan: Plan, log: Callable[[str], None]) -> tuple[Distributed, Callable[[str], None]]:
    """Under torchrun: join the process group (gloo on CPU, NCCL on GPU) and take this rank's GPU."""
    dist, plan.device = Distributed.start(plan.device)
    plan.precision.device = plan.device
    if dist.active:
        plan.train.run_name = dist.broadcast(plan.train.run_name)  # the default name is a timestamp: rank 0's
        if not plan.resume_from:
            plan.run_dir = Path(plan.train.output_dir) / plan.train.run_name
        if not dist.is_main:  # rank 0 alone speaks and writes
            log, plan.train.disable_tqdm = (lambda _: None), True
    for note in plan.notes:
        log(note)
    return dist, log


def build(plan: Plan, dist: Distributed, log: Callable[[str], None]) -> Training:
    cfg, device = plan.train, plan.device
    if plan.state and plan.state.get("data_fingerprint") not in (None, plan.data.fingerprint):
        log("warning: the prepared data changed since this run started; the data order will differ")
    torch.manual_seed(cfg.seed)
    model = Llama(plan.model, init_std=cfg.init_std).to(device)
    model.loss_impl = cfg.loss_impl  # same loss either way; only speed and memory differ (babyllama/ops)
    model.z_loss = cfg.z_loss
    model.gradient_checkpointing = bool(cfg.gradient_checkpointing)  # recompute blocks in backward (less memory)
    if plan.resume_from:  # whole weights go in before FSDP shards them
        plan.init_weights = ckpt.load_weights(plan.resume_from)
    if plan.init_weights is not None:
        model.load_state_dict(plan.init_weights)
        plan.init_weights = None  # loaded: let the memory go
    if cfg.fsdp and not dist.active:
        log("--fsdp true: a single process has nothing to shard; training unsharded")
    trained = dist.wrap(model, device, cfg.fsdp)  # DDP around the model, or the model sharded in place (FSDP)
    if dist.active:
        torch.manual_seed(cfg.seed + dist.rank)  # same weights on every rank (above), own dropout stream per rank
    optimizer = build_optimizer(model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, device=device,
                                optim=cfg.optim, muon_learning_rate=cfg.muon_learning_rate,
                                muon_weight_decay=cfg.muon_weight_decay, muon_momentum=cfg.muon_momentum)
    scaler = torch.amp.GradScaler(device.type) if plan.precision.dtype == torch.float16 else None
    state = TrainState()
    if plan.resume_from:
        _, optimizer_state, rng = ckpt.load_training_state(plan.resume_from)
        dist.load_optimizer(optimizer, optimizer_state)
        rng, rng_note = dist.own_rng(rng)
        restore_rng(rng, device)
        if rng_note:
            log(rng_note)
        state.load_state_dict(plan.state)
        log(f"resuming {plan.run_dir} from {plan.resume_from.name} (step {state.step}, {state.tokens_seen:,} tokens)")
    sampler = plan.data.sampler(cfg.seq_len, cfg.seed)  # one folder, or several mixed by weight
    batches = BatchPlan(cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, dist.world_size, dist.rank)
    cadence = Cadence(max_steps=cfg.max_steps, max_time=cfg.max_time, logging_steps=cfg.logging_steps,
                      epoch_steps=int(cfg.num_train_epochs * sampler.windows_per_epoch / batches.global_batch),
                      eval_steps=cfg.eval_steps, save_steps=cfg.save_steps, warmup_steps=cfg.warmup_steps,
                      warmup_ratio=cfg.warmup_ratio, step=state.step, elapsed=state.elapsed_before)
    if plan.resume_from:
        cadence.load_state_dict(plan.state.get("cadence"), state.step)
    guard = NonFiniteGuard(optimizer, device, cfg.max_consecutive_nonfinite, resume_hint=str(plan.run_dir),
                           skipped=state.skipped_steps, scaler=scaler, on_device=not dist.fsdp)
    step = OptimizerStep(forward=torch.compile(trained) if cfg.torch_compile else trained, trained=trained,
                         model=model, optimizer=optimizer, scaler=scaler, precision=plan.precision, dist=dist,
                         load_batch=BatchLoader(sampler, batches, device), accumulation=batches.accumulation,
                         max_grad_norm=cfg.max_grad_norm, guard=guard, device=device)
    step = guard_out_of_memory(step, device, cfg, plan.precision.name)  # out of memory: say what to lower
    window = MetricsWindow(device, model.flops_per_token(cfg.seq_len), peak_flops(device, plan.precision))
    training = Training(plan, dist, model, step, guard, state, cadence, window, sampler, batches, log)
    training.checkpointer = Checkpointer(run_dir=plan.run_dir, dist=dist, model=model, optimizer=optimizer,
                                         device=device, keep=cfg.save_total_limit,
                                         trainer_state=training.trainer_state)
    return training


def start_record(t: Training) -> RunRecord | NullRecord:
    """Check the disk, then lock the run folder and write its manifest (rank 0); the caller enters the record."""
    plan, cfg, dist = t.plan, t.plan.train, t.dist
    # Before anything is written: fail now, not at the first save hours later.
    dist.on_main(lambda: preflight(plan.run_dir, t.model.num_params(), cfg.save_total_limit,
                                   t.cadence.planned_saves(),
                                   existing=len(list_checkpoints(plan.run_dir)) if plan.resume_from else 0))
    data, tokenizer, device = plan.data, plan.data.tokenizer, plan.device
    record = dist.on_main(lambda: RunRecord.start(
        str(plan.run_dir.parent), plan.run_dir.name, "pretrain", config_record(plan),
        overwrite=cfg.overwrite_output_dir, resume=plan.resume_from is not None, parent=cfg.init_from,
        inputs=(cfg.data, cfg.init_from),
        extra={"data": data.describe(cfg.seq_len, cfg.seed),
               "tokenizer": {"hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size},
               "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda"
                          else "cpu", "precision": plan.precision.name, "threads": torch.get_num_threads()},
               "model_parameters": t.model.num_params(),
               **({"distributed": {"world_size": dist.world_size, "backend": dist.backend, "fsdp": dist.fsdp}}
                  if dist.active else {})}))
    return record if dist.is_main else NullRecord(plan.run_dir)


def open_run(t: Training) -> None:
    """Inside the record: trackers, the tokenizer beside the model, the evaluator; say what will run."""
    plan, cfg, record = t.plan, t.plan.train, t.record
    t.log(record.arguments_text().rstrip())  # the resolved arguments, secrets replaced (also in arguments.txt)
    record.summary = t.summary
    record.open_trackers(cfg.report_to, config_record(plan))
    folder = RunFolder(plan.run_dir)
    if t.dist.is_main and not folder.tokenizer.exists():
        shutil.copytree(plan.data.folder / "tokenizer", folder.tokenizer)
    t.evaluate = Evaluator(model=t.model, valid_tokens=plan.data.tokens("valid"), tokenizer=plan.data.tokenizer,
                           cfg=cfg, device=plan.device, precision=plan.precision, record=record)
    m, b = plan.model, t.batches
    t.log(f"run {plan.run_dir}: {m.n_layers} layers x {m.dim} dim, {t.model.num_params():,} parameters, "
          f"vocab {m.vocab_size}; {plan.device.type} {plan.precision.name}{' compiled' if cfg.torch_compile else ''}; "
          f"batch {b.micro_batch} x {cfg.gradient_accumulation_steps} accumulation x {b.world_size} "
          f"process{'es' if b.world_size > 1 else ''} = {b.global_batch} sequences of {cfg.seq_len} "
          f"({t.tokens_per_step:,} tokens) per step; lr {cfg.learning_rate:g} {cfg.lr_scheduler_type}; "
          f"{t.cadence.describe()}")


def evaluate_and_log(t: Training, write: Callable[[str], None]) -> dict[str, Any]:
    metrics = t.evaluate(t.state.step)
    t.state.observe_eval(metrics)
    t.record.log_metrics({"step": t.state.step, **metrics, "tokens_seen": t.state.tokens_seen})
    write(eval_line(t.state.step, metrics))
    return metrics


def train(t: Training, stop: StopRequest) -> str:
    """The loop. Returns "completed" or "interrupted"."""
    cfg, state, cadence, window, dist = t.plan.train, t.state, t.cadence, t.window, t.dist
    total, unit = cadence.bar_total()
    bar = tqdm(total=total, initial=state.step if unit == "step" else round(state.elapsed_before), unit=unit,
               disable=cfg.disable_tqdm, dynamic_ncols=True,
               bar_format=None if unit == "step" else "{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}]")
    write = bar.write if not cfg.disable_tqdm else t.log
    t.model.train()
    shown_context = cfg.seq_len  # the run's description names it; a warmup's shorter windows are announced
    with bar, t.step.load_batch:  # the progress bar and the batch worker end with the loop
        while not cadence.finished(state.step):
            cadence.step_started(state.step)
            faults.point("train.step")
            warmup, decay = cadence.position(state.step)
            lr = learning_rate_for(warmup=warmup, decay=decay, peak=cfg.learning_rate, kind=cfg.lr_scheduler_type,
                                   min_ratio=cfg.min_lr_ratio, decay_ratio=cfg.lr_decay_ratio)
            context = training_context(cadence.run_fraction(state.step), cfg.seq_len, cfg.seq_len_warmup_ratio)
            if context != shown_context:
                write(f"step {state.step}: training on windows of {context} tokens"
                      f"{'' if context == cfg.seq_len else ' (--seq_len_warmup_ratio)'}")
                shown_context = context
            loss, grad_norm, finite = t.step(state.step, lr, context)
            state.advance(t.tokens_per_step)
            window.add(loss, finite, t.tokens_per_step)
            # One agreement per step: a stop request on any rank stops every rank; rank 0's clock rules the budget.
            stopping, shared = dist.agree(stop.requested is not None, *cadence.share(state.step, state.elapsed()),
                                          device=t.plan.device)
            cadence.adopt(shared)
            # tqdm drops a total that n passes (then its '{total:.0f}' fails): a time bar stops at its budget
            bar.update(1 if unit == "step" else max(0.0, min(state.elapsed(), total) - bar.n))
            step = state.step
            log_now, eval_now = cadence.should_log(step), cadence.should_eval(step)
            save_now = cadence.should_save(step, evaluated=eval_now)
            if log_now or eval_now or save_now or stopping or t.guard.due(step):
                t.guard.check(step, write)  # before anything is logged or saved
            if log_now:
                metrics = window.read(step=step, learning_rate=lr, grad_norm=grad_norm, tokens_seen=state.tokens_seen,
                                      epoch=round(t.sampler.epoch_of(step * t.batches.global_batch), 4),
                                      elapsed_seconds=round(state.elapsed(), 2),
                                      **({"context": context} if cfg.seq_len_warmup_ratio else {}),
                                      **({"skipped_steps": t.guard.skipped} if t.guard.skipped else {}))
                t.record.log_metrics(metrics)
                write(log_line(metrics, cadence.total_label(step)))
            if eval_now or save_now:
                began = state.elapsed()
                if eval_now:
                    evaluate_and_log(t, write)
                if save_now:
                    t.checkpointer.save(step)
                cadence.overhead(state.elapsed() - began, evaluation=eval_now)
                window.exclude(state.elapsed() - began)
            if stopping:
                write(f"{stop.requested or 'a stop request on another process'} received: checkpointing at "
                      f"step {step} and stopping")
                if not save_now:
                    t.checkpointer.save(step)
                return "interrupted"
    t.final_metrics = evaluate_and_log(t, write)
    t.checkpointer.save(state.step)
    t.model_path = t.checkpointer.save_model(t.plan.data.tokenizer)
    write(f"done: step {state.step}, eval loss {t.final_metrics['eval_loss']:.4f}, "
          f"bits/byte {t.final_metrics['eval_bpb']:.4f}, model in {t.model_path}")
    return "completed"


def pretrain(train_values: dict[str, Any], model_values: dict[str, Any], log: Callable[[str], None] = print) -> Path:
    plan = plan_run(train_values, model_values)
    dist, log = join_processes(plan, log)
    t = build(plan, dist, log)
    t.record = start_record(t)
    with t.record:  # from here on, however the run ends, its record says so
        open_run(t)
        with StopRequest(plan.train.stop_timeout, lambda why: t.record.finish("interrupted", error=why)) as stop:
            status = train(t, stop)
        if status == "interrupted":
            raise SystemExit(stop.exit_status)
    if t.dist.is_main:  # the record is final now: the model card tells what was trained, how and how well
        write_model_card(plan.run_dir / "model", plan.run_dir, license=plan.train.license)
    return plan.run_dir
