"""Model quality at equal wall clock: `babyllama pretrain` run once per variant, one after another, each for the same
`--max_time`, and the final validation bits/byte of each, with its eval curve, steps and median tokens/s.

    python bench/quality.py --data data/tinystories-2048 --preset 260k --max_time 600 \
        --variant default= --variant wsd="--lr_scheduler_type warmup_stable_decay"
    python bench/quality.py --data data/tinystories-2048 --variant default= --variant vocab4096= \
        --variant_data vocab4096=data/tinystories-4096

A variant is NAME=FLAGS (FLAGS may be empty: the defaults); `--variant_data NAME=PATH` gives one variant other data
(e.g. another tokenizer size). Runs go one after another, never side by side (they share the CPU);
the load average before and after each run is recorded so a disturbed run can be told apart.
Results: bench/results/quality-<preset>-<max_time>s-<tag>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_variant(name: str, flags: str, data: str, args) -> dict:
    runs = Path(args.runs)
    command = [sys.executable, "-m", "babyllama", "pretrain", "--data", data, "--preset", args.preset,
               "--max_time", str(args.max_time), "--output_dir", str(runs), "--run_name", name,
               "--overwrite_output_dir", "true", "--disable_tqdm", "true", "--seed", str(args.seed),
               *shlex.split(flags)]
    load_before = os.getloadavg()
    started = time.time()
    log = runs / f"{name}.log"
    runs.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{name} failed (exit {done.returncode}); see {log}")
    logged = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
    evals = [(m["step"], round(m["eval_bpb"], 4)) for m in logged if "eval_bpb" in m]
    rates = [m["tokens_per_second"] for m in logged if "tokens_per_second" in m][1:]  # first window: start-up
    result = {"flags": flags, "data": data, "eval_bpb": evals[-1][1], "steps": evals[-1][0],
              "median_tokens_per_second": round(statistics.median(rates)), "seconds": round(time.time() - started, 1),
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "eval_curve": evals}
    print(f"{time.strftime('%H:%M:%S')} {name}: {result['eval_bpb']:.4f} bits/byte, {result['steps']} steps, "
          f"{result['median_tokens_per_second']:,} tokens/s (load {result['load_before'][0]} -> "
          f"{result['load_after'][0]})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared data folder for every variant")
    parser.add_argument("--variant", action="append", required=True, help="NAME=FLAGS (repeatable)")
    parser.add_argument("--variant_data", action="append", default=[], help="NAME=PATH: other data for one variant")
    parser.add_argument("--preset", default="260k")
    parser.add_argument("--max_time", type=float, default=600)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", default="runs/quality", help="folder for the run folders and their logs")
    parser.add_argument("--tag", default="variants")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    data_for = dict(item.split("=", 1) for item in args.variant_data)
    variants = [item.split("=", 1) if "=" in item else (item, "") for item in args.variant]
    results = {}
    for name, flags in variants:
        results[name] = run_variant(name, flags, data_for.get(name, args.data), args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    record = {"benchmark": f"quality-{args.preset}-{args.max_time:g}s", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
              time.gmtime()), "command": " ".join(sys.argv), "commit": commit.stdout.strip(),
              "cpu_count": os.cpu_count(), "seed": args.seed, "runs": results}
    out = Path(args.out) / f"quality-{args.preset}-{args.max_time:g}s-{args.tag}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
