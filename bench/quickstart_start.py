"""Time from `babyllama quickstart` to its first training step, the online path simulated with local files.

Builds a --mb MB TinyStories-like corpus (the shared stories repeated) as parquet shards in a temporary Hub
mirror (BABYLLAMA_HUB_MIRROR serves hf:roneneldan/TinyStories from it, through the same `datasets` streaming code
as the real Hub), runs quickstart with --logging_steps 1 and reports when the run's metrics.jsonl gets its first
row: the seconds a newcomer waits before training starts. Results go to bench/results/quickstart-*.json.

    python bench/quickstart_start.py --mb 200                # the measurement
    python bench/quickstart_start.py --mb 5 --max_time 5     # a quick check that it runs

quickstart is stopped once its first step is logged, unless --full.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def build_mirror(stories: Path, megabytes: float, folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from babyllama.data.sources import read_documents

    repo = folder / "roneneldan" / "TinyStories"
    repo.mkdir(parents=True)
    docs = list(read_documents(stories / "train.txt"))
    per_copy = sum(len(d.encode()) for d in docs)
    copies = max(1, round(megabytes * 1_000_000 / per_copy))
    shard, rows = 0, []
    for _ in range(copies):
        rows.extend(docs)
        if len(rows) * (per_copy / len(docs)) >= 100_000_000:  # ~100 MB shards, like the Hub's
            pq.write_table(pa.table({"text": rows}), repo / f"train-{shard:05d}.parquet")
            shard, rows = shard + 1, []
    if rows:
        pq.write_table(pa.table({"text": rows}), repo / f"train-{shard:05d}.parquet")
    pq.write_table(pa.table({"text": list(read_documents(stories / "valid.txt"))}), repo / "validation-00000.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--max_time", type=float, default=20, help="seconds of training after the first step")
    parser.add_argument("--stories", default=str(REPO.parent / "shared" / "data" / "tinystories"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--full", action="store_true", help="let quickstart finish (train, tell stories)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-quickstart-") as tmp:
        tmp = Path(tmp)
        build_mirror(Path(args.stories), args.mb, tmp / "mirror")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "BABYLLAMA_HUB_MIRROR": str(tmp / "mirror")}
        metrics = tmp / "runs" / "qs" / "metrics.jsonl"
        log = tmp / "quickstart.log"  # a file, not a pipe: nobody reads a pipe while we poll, and it would fill
        started = time.perf_counter()
        with open(log, "w") as out:
            child = subprocess.Popen([sys.executable, "-m", "babyllama", "quickstart", "--data", "tinystories",
                                      "--max_time", str(args.max_time), "--logging_steps", "1",
                                      "--output_dir", str(tmp / "runs"), "--run_name", "qs"],
                                     cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
            first_step = None
            while child.poll() is None and first_step is None:
                if metrics.is_file() and any('"loss"' in line for line in metrics.read_text().splitlines()):
                    first_step = time.perf_counter() - started
                time.sleep(0.05)
            if first_step is not None and not args.full:
                child.kill()  # measured; SIGKILL, since a SIGTERM would make the loop evaluate and save first
            child.wait()
        total = time.perf_counter() - started
        output = log.read_text()
        if first_step is None or (args.full and child.returncode != 0):
            raise SystemExit(f"quickstart failed:\n{output[-3000:]}")
        ready = next((line for line in output.splitlines() if line.startswith("data ready after")), "")
    result = {"mb": args.mb, "cpus": os.cpu_count(), "seconds_to_first_step": first_step,
              "data_ready_line": ready, "seconds_total": total, "max_time": args.max_time}
    print(json.dumps(result, indent=2))
    folder = Path(args.results)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"quickstart-{args.mb:g}mb-{os.cpu_count()}cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
