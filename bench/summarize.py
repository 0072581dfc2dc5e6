"""Print the throughput results in a folder as one Markdown table (for the README and the issue note).

    python bench/summarize.py bench/results/gpu
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(folder: Path):
    for path in sorted(folder.glob("throughput-*.json")):
        record = json.loads(path.read_text())
        s = record["settings"]
        where = record["machine"].get("gpu") or record["machine"].get("cpu", "cpu")
        shape = f"{s['preset']} v{s['model']['vocab_size']} {s['batch']}x{s['seq_len']} {s['precision']}"
        for r in record["results"].values():
            if "error" in r:
                yield [shape, r["runner"], "FAILED", "", "", "", r["error"][:60], where, path.name]
                continue
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "-"
            ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r.get("ratios", {}).items())
            yield [shape, r["runner"], f"{r['tokens_per_second']:,.0f}", mfu, f"{r['peak_memory_mb']:,.0f}",
                   f"{r['warmup_seconds']:.0f}", ratios, where, path.name]


def main(argv=None) -> None:
    folders = [Path(a) for a in (argv if argv is not None else sys.argv[1:])] or [Path("bench/results")]
    header = ["shape", "runner", "tokens/s", "MFU", "peak MB", "warm-up s", "ratios", "device", "file"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for folder in folders:
        for row in rows(folder):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
