"""Where does a training step's time go? torch.profiler over a few steps of one runner, the top kernels/ops.

Uses bench/throughput.py's runners (same model, batches, precision and compile settings), so a profile explains
a throughput number. Prints the table sorted by device time (CUDA) or CPU time, and saves it as text.

    python bench/profile_step.py --preset 260k --device cpu --runner ours
    python bench/profile_step.py --preset 15m --vocab_size 32000 --batch 128 --seq_len 256 --device cuda --bf16 \
        --compile default --runner ours:fuse=1
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import LoopRunner, model_config, parse_args as throughput_args, parse_spec, synchronize  # noqa: E402

from babyllama.model import Llama  # noqa: E402
from babyllama.train.device import Precision  # noqa: E402


def main(argv=None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = 25
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        del argv[i:i + 2]
    args = throughput_args(argv)
    if len(args.runners) != 1 or args.runners[0].startswith("trainer"):
        raise SystemExit("profile one plain-loop runner: --runners ours[:...] or hf[:...]")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = Precision(device, torch.bfloat16 if args.bf16 else None)
    cfg = model_config(args)
    torch.manual_seed(args.seed)
    state_dict = Llama(cfg).state_dict()
    spec = parse_spec(args.runners[0])
    runner = LoopRunner(spec, cfg, state_dict, device, precision, args.force_compile or args.compile)
    rows = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len + 1))
    inputs, targets = rows[:, :-1].contiguous().to(device), rows[:, 1:].contiguous().to(device)
    for _ in range(args.warmup):
        runner.step(inputs, targets)
    synchronize(device)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            runner.step(inputs, targets)
        synchronize(device)
    step_ms = (time.perf_counter() - start) / args.steps * 1e3
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    header = (f"{args.preset} vocab {cfg.vocab_size}, {args.batch} x {args.seq_len}, {device.type} {precision.name}, "
              f"compile={runner.compile_mode}, runner {spec.name}: {step_ms:.2f} ms/step under the profiler "
              f"({args.steps} steps), torch {torch.__version__}")
    table = prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=70)
    print(header)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"-{args.tag}" if args.tag else ""
    path = out / f"profile-{args.preset}-{device.type}-{precision.name}{tag}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text(header + "\n" + table + "\n")
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
