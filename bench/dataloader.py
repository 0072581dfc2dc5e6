"""Does the batch pipeline keep up? Tokens per second that WindowSampler delivers, against the model's rate.

Measures the loop's own path, babyllama.train.fastpaths.BatchLoader run synchronously: the memmap gather, and
on a GPU int32 windows pinned, copied and widened on the device. Compares with a model token rate (given, or the best babyllama
result in bench/results/throughput-*.json for the same preset and device) and checks the >= 10x goal.

    python bench/dataloader.py --data data/ts-4096 --batch 16 --seq_len 256
    python bench/dataloader.py --synthetic_tokens 50000000 --vocab_size 32000 --batch 128 --seq_len 256
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from babyllama.data.batches import BatchPlan, WindowSampler  # noqa: E402
from babyllama.train.fastpaths import BatchLoader  # noqa: E402


def best_model_rate(preset: str, device: str, folder: Path) -> tuple[float, str] | None:
    """The fastest babyllama runner in saved throughput results for this preset and device."""
    best = None
    for path in glob.glob(str(folder / f"throughput-{preset}-{device}-*.json")):
        record = json.loads(Path(path).read_text())
        for result in record.get("results", {}).values():
            if result.get("kind") == "ours" and result.get("tokens_per_second"):
                if best is None or result["tokens_per_second"] > best[0]:
                    best = (result["tokens_per_second"], Path(path).name)
    return best


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a prepared data folder (uses its train split)")
    parser.add_argument("--synthetic_tokens", type=int, default=20_000_000, help="without --data: a random memmap")
    parser.add_argument("--vocab_size", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--preset", default="15m", help="which throughput results to compare with")
    parser.add_argument("--model_tokens_per_second", type=float, default=None)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"),
                        help="folder for the JSON result; also where the model's throughput results are looked up")
    args = parser.parse_args(argv)

    if args.data:
        from babyllama.data.shards import PretokenizedData

        tokens = PretokenizedData(args.data).tokens("train")
        source = args.data
    else:
        # A memmap on disk, like real shards (uint16 while the vocabulary fits).
        dtype = np.uint16 if args.vocab_size < 2 ** 16 else np.uint32
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"babyllama-bench-{args.synthetic_tokens}-{dtype.__name__}.bin"
        if not path.exists() or path.stat().st_size != args.synthetic_tokens * np.dtype(dtype).itemsize:
            rng = np.random.default_rng(0)
            rng.integers(0, args.vocab_size, args.synthetic_tokens, dtype=dtype).tofile(path)
        tokens = np.memmap(path, dtype=dtype, mode="r")
        source = f"synthetic memmap of {args.synthetic_tokens:,} tokens ({path})"
    sampler = WindowSampler(tokens, args.seq_len, seed=0)
    plan = BatchPlan(args.batch, 1)
    device = torch.device(args.device)
    # The training loop's own loader, made synchronous: every batch is gathered, pinned (GPU), copied and
    # widened while the clock runs, the worst case of the loop (which prepares the next batch during a step).
    loader = BatchLoader(sampler, plan, device, background=False)
    first_step = 1000  # mid-run steps, so the epoch plan is computed up front as in a long run
    loader(first_step - 1, 0)
    start = time.perf_counter()
    for step in range(first_step, first_step + args.steps):
        inputs, targets = loader(step, 0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    rate = args.steps * args.batch * args.seq_len / seconds

    model = (args.model_tokens_per_second, "given") if args.model_tokens_per_second else \
        best_model_rate(args.preset, args.device, Path(args.out))
    record = {"benchmark": "dataloader", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "source": source, "batch": args.batch, "seq_len": args.seq_len, "device": args.device,
              "steps": args.steps, "pipeline_tokens_per_second": rate, "load_average": os.getloadavg()}
    print(f"batch pipeline: {rate:,.0f} tokens/s ({args.steps} batches of {args.batch} x {args.seq_len}, "
          f"{seconds / args.steps * 1e3:.2f} ms per batch; {source})")
    if model:
        record.update(model_tokens_per_second=model[0], model_rate_from=model[1], ratio=rate / model[0],
                      meets_10x=rate >= 10 * model[0])
        print(f"model: {model[0]:,.0f} tokens/s ({model[1]}) -> the pipeline is {rate / model[0]:,.0f}x faster; "
              f"goal >= 10x: {'met' if rate >= 10 * model[0] else 'NOT met'}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dataloader-{args.device}-b{args.batch}-s{args.seq_len}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"saved {path}")
    return record


if __name__ == "__main__":
    main()
