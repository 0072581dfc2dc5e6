"""Training throughput, side by side, in one process: babyllama vs transformers' LlamaForCausalLM vs Trainer.

Every runner trains the same shape on the same random-token batches from the same initial weights (the
Hugging Face model loads babyllama's state dict, so their first losses must agree), with fused AdamW,
gradient clipping at 1.0, and the same precision. Prints tokens/s, MFU (GPU), peak memory and the ratios;
writes a JSON record (machine, versions, settings, results) under bench/results/.

    python bench/throughput.py --preset 260k --device cpu --steps 6
    python bench/throughput.py --preset 15m --vocab_size 32000 --batch 128 --device cuda --bf16 --compile \
        --runners ours ours:loss=standard hf trainer

A runner is KIND[:key=value,...]: KIND is ours, hf (LlamaForCausalLM in a plain loop) or trainer
(transformers.Trainer); keys: loss=auto|standard|chunked|liger|cce|fused (ours), compile=none|default|
reduce-overhead|max-autotune-no-cudagraphs (reduce-overhead = CUDA graphs), gc=on|off (gradient checkpointing, every
kind), optim=adamw|muon (the plain-loop runners; default fused AdamW), name=LABEL. On CPU the timed steps of the plain-loop runners are interleaved in
rounds, so a busy shared machine slows them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a bare checkout too (the GPU machine has no install)

from babyllama.config import PRESETS, ModelConfig  # noqa: E402
from babyllama.model import Llama  # noqa: E402
from babyllama.ops.linear_cross_entropy import resolve_loss_impl  # noqa: E402
from babyllama.train.device import peak_flops, Precision  # noqa: E402
from babyllama.train.optim import build_optimizer  # noqa: E402

DEFAULT_VOCAB = {"260k": 512}
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


# --------------------------------------------------------------------------- runner specs


@dataclass
class Spec:
    kind: str
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        if "name" in self.options:
            return self.options["name"]
        extra = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.kind}[{extra}]" if extra else self.kind


def parse_spec(text: str) -> Spec:
    kind, _, rest = text.partition(":")
    if kind not in ("ours", "hf", "trainer"):
        raise SystemExit(f"unknown runner '{kind}' in '{text}'; use ours, hf or trainer")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in ("loss", "compile", "gc", "optim", "name"):
            raise SystemExit(f"unknown runner option '{key}' in '{text}'")
        if key == "compile" and value not in COMPILE_MODES:
            raise SystemExit(f"compile={value}: choose one of {', '.join(COMPILE_MODES)}")
        if key == "gc" and value not in ("on", "off"):
            raise SystemExit(f"gc={value}: use on or off")
        if key == "optim" and value not in ("adamw", "muon"):
            raise SystemExit(f"optim={value}: use adamw or muon")
        options[key] = value
    return Spec(kind, options)


# --------------------------------------------------------------------------- measurement helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory during a window: CUDA's allocator peak, or on CPU the peak resident set (sampled) above its start."""

    def __init__(self, device: torch.device):
        self.device = device
        self._stop = threading.Event()
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._start = self._rss()
            self._peak = self._start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            self._thread.join()
            self._stop.clear()
            self.peak_bytes = max(self.peak_bytes, self._peak - self._start)


def compile_fn(module: torch.nn.Module, mode: str):
    if mode == "none":
        return module
    return torch.compile(module, mode=None if mode == "default" else mode)


def hf_config(cfg: ModelConfig, attn: str = "sdpa"):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
                       num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                       num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.max_seq_len,
                       rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
                       attention_bias=False, mlp_bias=False, attn_implementation=attn, use_cache=False)


def build_hf(cfg: ModelConfig, state_dict: dict, device: torch.device):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(hf_config(cfg)).to(device)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise RuntimeError(f"weights did not map onto LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    if cfg.tie_embeddings:
        model.tie_weights()
    return model


# --------------------------------------------------------------------------- plain-loop runners


class LoopRunner:
    """ours / hf: one optimizer step per call, no host synchronisation inside the step."""

    def __init__(self, spec: Spec, cfg: ModelConfig, state_dict: dict, device: torch.device, precision: Precision,
                 compile_mode: str):
        self.spec, self.device, self.precision = spec, device, precision
        self.compile_mode = spec.options.get("compile", compile_mode)
        self.loss_resolved = "transformers"
        if spec.kind == "ours":
            model = Llama(cfg).to(device)
            model.load_state_dict(state_dict)
            model.loss_impl = spec.options.get("loss", "auto")
            model.gradient_checkpointing = spec.options.get("gc") == "on"
            self.loss_resolved = resolve_loss_impl(model.loss_impl, device.type)  # after fallbacks, for the record
            self.model = model
            compiled = compile_fn(model, self.compile_mode)
            self.forward = lambda x, y: compiled(x, y)
        else:
            model = build_hf(cfg, state_dict, device)
            if spec.options.get("gc") == "on":
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model = model
            compiled = compile_fn(model, self.compile_mode)
            # labels= switches the loss on; shift_labels= gives it exactly our targets (no internal shift).
            self.forward = lambda x, y: compiled(input_ids=x, labels=x, shift_labels=y).loss
        self.model.train()
        self.optimizer = build_optimizer(self.model, learning_rate=3e-4, weight_decay=0.1, betas=(0.9, 0.95),
                                         eps=1e-8, device=device, optim=spec.options.get("optim", "adamw"))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.loss_sum = torch.zeros((), device=device)
        self.losses: list[torch.Tensor] = []

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, keep_loss: bool = False) -> None:
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with self.precision.autocast():
            loss = self.forward(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        detached = loss.detach().float()
        self.loss_sum += detached  # asynchronous: read once at the end
        if keep_loss:
            self.losses.append(detached.clone())


# --------------------------------------------------------------------------- Trainer runner


def run_trainer(spec: Spec, cfg: ModelConfig, state_dict: dict, device: torch.device, precision: Precision,
                compile_mode: str, batches: list, warmup: int, steps: int, workdir: Path) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    mode = spec.options.get("compile", compile_mode)
    model = build_hf(cfg, state_dict, device)
    batch_size = batches[0][0].shape[0]
    rows = [(x[i].cpu(), y[i].cpu()) for x, y in batches for i in range(batch_size)]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return (warmup + steps) * batch_size

        def __getitem__(self, index):
            x, y = rows[index % len(rows)]
            return {"input_ids": x, "labels": x, "shift_labels": y}

    marks: dict[str, float] = {}
    memory = PeakMemory(device)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                synchronize(device)
                marks["start"] = time.perf_counter()
                memory.__enter__()
            elif state.global_step == warmup + steps:
                synchronize(device)
                marks["end"] = time.perf_counter()
                memory.__exit__()

    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=batch_size, max_steps=warmup + steps,
        learning_rate=3e-4, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0,
        optim="adamw_torch_fused", lr_scheduler_type="constant", bf16=precision.dtype == torch.bfloat16,
        torch_compile=mode != "none", torch_compile_mode=None if mode in ("none", "default") else mode,
        use_cpu=device.type == "cpu", save_strategy="no", report_to="none", logging_steps=10 ** 6,
        disable_tqdm=True, dataloader_pin_memory=device.type == "cuda", seed=0,
        gradient_checkpointing=spec.options.get("gc") == "on",
        gradient_checkpointing_kwargs={"use_reentrant": False} if spec.options.get("gc") == "on" else None)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[Clock()])
    started = time.perf_counter()
    trainer.train()
    seconds = marks["end"] - marks["start"]
    result = {"seconds": seconds, "warmup_seconds": marks["start"] - started,
              "peak_memory_bytes": memory.peak_bytes, "step_seconds": [seconds / steps]}
    del trainer, model
    return result


# --------------------------------------------------------------------------- main


def machine_info(device: torch.device) -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gb=round(props.total_memory / 2 ** 30, 1),
                    cuda=torch.version.cuda)
    return info


def versions() -> dict:
    out = {"torch": torch.__version__}
    for name in ("transformers", "accelerate", "liger_kernel", "cut_cross_entropy", "triton", "numpy"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:
            out[name] = None
    try:
        out["babyllama_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                                 capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["babyllama_commit"] = None
    return out


def model_config(args) -> ModelConfig:
    values = dict(PRESETS[args.preset])
    values["vocab_size"] = args.vocab_size or DEFAULT_VOCAB.get(args.preset, 32000)
    if args.seq_len > values["max_seq_len"]:
        values["max_seq_len"] = args.seq_len
    return ModelConfig(**values)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="260k", choices=tuple(PRESETS))
    parser.add_argument("--vocab_size", type=int, default=None, help="default: 512 for 260k, else 32000")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--seq_len", type=int, default=None, help="default: the preset's max_seq_len")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every runner (default fp32)")
    parser.add_argument("--compile", default="none", choices=COMPILE_MODES, nargs="?", const="default",
                        help="torch.compile mode for every runner unless its spec says otherwise")
    parser.add_argument("--force_compile", default=None, choices=COMPILE_MODES,
                        help="override every runner's compile mode (dry runs of GPU scripts on a CPU)")
    parser.add_argument("--runners", nargs="+", default=["ours", "hf", "trainer"])
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per runner (compilation happens here)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per runner")
    parser.add_argument("--rounds", type=int, default=None,
                        help="split the timed steps into rounds that alternate the runners (default: 2 on CPU, 1 on "
                             "GPU, where runners run one after the other so peak memory is each one's own)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for the JSON result")
    parser.add_argument("--tag", default=None, help="a label added to the JSON file name")
    parser.add_argument("--note", default="", help="free text stored in the result (e.g. 'shared CPU, under load')")
    args = parser.parse_args(argv)
    args.seq_len = args.seq_len or PRESETS[args.preset]["max_seq_len"]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = Precision(device, torch.bfloat16 if args.bf16 else None)
    cfg = model_config(args)
    specs = [parse_spec(s) for s in args.runners]
    if args.force_compile:
        args.compile = args.force_compile
        for spec in specs:
            if "compile" in spec.options:
                spec.options["name"] = spec.name  # keep the label the GPU run would print
                spec.options["compile"] = args.force_compile
    rounds = args.rounds or (2 if device.type == "cpu" else 1)
    load_before = os.getloadavg()

    torch.manual_seed(args.seed)
    reference = Llama(cfg)
    state_dict = {k: v.clone() for k, v in reference.state_dict().items()}
    flops_per_token = reference.flops_per_token(args.seq_len)
    n_params = reference.num_params()
    del reference
    generator = torch.Generator().manual_seed(args.seed + 1)
    batches = []
    for _ in range(4):  # a few distinct batches, cycled
        rows = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len + 1), generator=generator)
        batches.append((rows[:, :-1].contiguous().to(device), rows[:, 1:].contiguous().to(device)))
    tokens_per_step = args.batch * args.seq_len
    peak = peak_flops(device, precision)

    print(f"{args.preset}: {n_params / 1e6:.2f}M parameters, vocab {cfg.vocab_size}, batch {args.batch} x seq "
          f"{args.seq_len} = {tokens_per_step:,} tokens/step; {device.type} {precision.name}, compile={args.compile}; "
          f"{args.warmup} warm-up + {args.steps} timed steps; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {load_before[0]:.2f}", flush=True)

    results: dict[str, dict] = {}
    loop_specs = [s for s in specs if s.kind != "trainer"]
    # Build and warm up (compile) each plain-loop runner; on GPU run each to completion before the next.
    live: dict[str, LoopRunner] = {}

    def measure(spec: Spec, runner: LoopRunner, n_steps: int, memory: PeakMemory) -> None:
        synchronize(device)
        start = time.perf_counter()
        with memory:
            for i in range(n_steps):
                x, y = batches[i % len(batches)]
                runner.step(x, y)
            synchronize(device)
        results[spec.name]["step_seconds"].append((time.perf_counter() - start) / n_steps)

    def build(spec: Spec) -> Optional[LoopRunner]:
        start = time.perf_counter()
        try:
            runner = LoopRunner(spec, cfg, state_dict, device, precision, args.compile)
            for i in range(args.warmup):
                x, y = batches[i % len(batches)]
                runner.step(x, y, keep_loss=i == 0)
            synchronize(device)
        except Exception as err:  # one failing variant must not lose the others' numbers
            results[spec.name] = {"runner": spec.name, "kind": spec.kind, "error": f"{type(err).__name__}: {err}"}
            print(f"  {spec.name}: FAILED {type(err).__name__}: {str(err)[:300]}", flush=True)
            return None
        results[spec.name] = {"runner": spec.name, "kind": spec.kind, "options": spec.options,
                              "compile": runner.compile_mode, "loss_impl": runner.loss_resolved,
                              "warmup_seconds": time.perf_counter() - start,
                              "step_seconds": [], "first_loss": float(runner.losses[0]) if runner.losses else None}
        print(f"  {spec.name}: built and warmed up in {results[spec.name]['warmup_seconds']:.1f}s "
              f"(first loss {results[spec.name]['first_loss']})", flush=True)
        return runner

    per_round = max(1, args.steps // rounds)
    memories: dict[str, PeakMemory] = {}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    tag = f"-{args.tag}" if args.tag else ""
    path = Path(args.out) / f"throughput-{args.preset}-{device.type}-{precision.name}{tag}-{stamp}.json"

    def finish(spec: Spec) -> None:
        if "error" not in results[spec.name]:
            results[spec.name]["peak_memory_bytes"] = memories[spec.name].peak_bytes
            results[spec.name]["timed_steps"] = per_round * rounds

    def save(final: bool) -> dict:
        """Summaries and the JSON file; called after every runner, so a killed run keeps what finished."""
        done = {n: dict(r) for n, r in results.items() if "error" in r or "peak_memory_bytes" in r}
        for r in done.values():
            if "error" in r:
                continue
            step = statistics.median(r["step_seconds"])  # robust to a noisy neighbour
            r["tokens_per_second"] = tokens_per_step / step
            r["mfu"] = r["tokens_per_second"] * flops_per_token / peak if peak else None
            r["peak_memory_mb"] = round(r["peak_memory_bytes"] / 2 ** 20, 1)
        ok = {n: r for n, r in done.items() if "error" not in r}
        baselines = {kind: next((n for n, r in ok.items() if r["kind"] == kind), None) for kind in ("hf", "trainer")}
        for name, r in ok.items():
            r["ratios"] = {f"vs_{kind}": r["tokens_per_second"] / ok[b]["tokens_per_second"]
                           for kind, b in baselines.items() if b and b != name}
            if baselines["hf"] and baselines["hf"] != name and ok[baselines["hf"]]["peak_memory_bytes"]:
                r["ratios"]["memory_vs_hf"] = r["peak_memory_bytes"] / ok[baselines["hf"]]["peak_memory_bytes"]
        load_after = os.getloadavg()
        cores = os.cpu_count() or 1
        # Load from other processes before we started means shared cores: absolute CPU numbers are then pessimistic.
        under_load = device.type == "cpu" and load_before[0] > 0.5
        memory_kind = "CUDA max_memory_allocated during the timed steps" if device.type == "cuda" else \
            "peak resident memory above the start of the timed steps (sampled; activations, not weights)"
        record = {
            "benchmark": "throughput", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "complete": final,
            "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
            "machine": machine_info(device), "versions": versions(),
            "settings": {"preset": args.preset, "model": {k: getattr(cfg, k) for k in
                                                          ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                                           "hidden_dim", "tie_embeddings")},
                         "parameters": n_params, "batch": args.batch, "seq_len": args.seq_len,
                         "tokens_per_step": tokens_per_step, "device": device.type, "precision": precision.name,
                         "compile": args.compile, "warmup_steps": args.warmup, "timed_steps": args.steps,
                         "rounds": rounds, "optimizer": "AdamW fused, clip 1.0", "data": "random tokens",
                         "flops_per_token": flops_per_token, "peak_flops": peak, "memory_measure": memory_kind},
            "load_average_before": load_before, "load_average_after": load_after, "cpu_cores": cores,
            "taken_under_load": under_load, "note": args.note, "results": done,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        if not final:
            return record
        print(f"\n{'runner':<42} {'tokens/s':>11} {'MFU':>6} {'peak MB':>9} {'warm-up s':>9} {'first loss':>10}  ratios")
        for name, r in done.items():
            if "error" in r:
                print(f"{name:<42} FAILED: {r['error'][:80]}")
                continue
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
            ratios = " ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items())
            loss = f"{r['first_loss']:.4f}" if r.get("first_loss") is not None else "-"
            print(f"{name:<42} {r['tokens_per_second']:>11,.0f} {mfu:>6} {r['peak_memory_mb']:>9,.0f} "
                  f"{r['warmup_seconds']:>9.1f} {loss:>10}  {ratios}")
        if under_load:
            print(f"note: the CPU was busy (load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {cores} "
                  f"cores); ratios are fairer than absolute numbers")
        print(f"saved {path}")
        return record

    if device.type == "cpu":
        for spec in loop_specs:
            runner = build(spec)
            if runner is not None:
                live[spec.name] = runner
                memories[spec.name] = PeakMemory(device)
        for _ in range(rounds):
            for spec in loop_specs:
                if spec.name in live:
                    measure(spec, live[spec.name], per_round, memories[spec.name])
        for spec in loop_specs:
            finish(spec)
        save(final=False)
    else:
        for spec in loop_specs:
            gc.collect()
            torch.cuda.empty_cache()
            torch._dynamo.reset()
            runner = build(spec)
            if runner is None:
                save(final=False)
                continue
            memories[spec.name] = PeakMemory(device)
            live[spec.name] = runner
            for _ in range(rounds):
                measure(spec, runner, per_round, memories[spec.name])
            del live[spec.name], runner
            finish(spec)
            save(final=False)
    live.clear()

    for spec in (s for s in specs if s.kind == "trainer"):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
        import tempfile

        try:
            with tempfile.TemporaryDirectory() as workdir:
                out = run_trainer(spec, cfg, state_dict, device, precision, args.compile, batches, args.warmup,
                                  args.steps, Path(workdir))
            results[spec.name] = {"runner": spec.name, "kind": "trainer", "options": spec.options,
                                  "compile": spec.options.get("compile", args.compile), **out,
                                  "timed_steps": args.steps}
            print(f"  {spec.name}: warm-up {out['warmup_seconds']:.1f}s", flush=True)
        except Exception as err:
            results[spec.name] = {"runner": spec.name, "kind": "trainer", "error": f"{type(err).__name__}: {err}"}
            print(f"  {spec.name}: FAILED {type(err).__name__}: {str(err)[:300]}", flush=True)
    return save(final=True)


if __name__ == "__main__":
    main()
