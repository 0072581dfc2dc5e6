#!/usr/bin/env bash
# A/B of the pretraining loop itself (not a model step in isolation): `babyllama pretrain` run from two source
# trees on the same prepared data and settings, alternating A B A B; prints each run's median tokens/s over its
# logged windows (the first window, which holds compilation, is left out) and the ratio B/A.
#   bash bench/loop_ab.sh OLD_SRC NEW_SRC            (e.g. a `git archive` of an older commit's src/, and src)
#   DEVICE=cpu STEPS=20 BATCH=4 bash bench/loop_ab.sh ...   (CPU dry run)
# A_LABEL / B_LABEL (e.g. commit ids) are stored in the JSON result.
set -euo pipefail
cd "$(dirname "$0")/.."
A_SRC=$(realpath "$1"); B_SRC=$(realpath "$2")
OUT=${OUT:-bench/results}
DEVICE=${DEVICE:-cuda}; STEPS=${STEPS:-400}; BATCH=${BATCH:-128}; PRESET=${PRESET:-15m}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
cat README.md docs/*.md | sed "s/<.endoftext.>//g" > "$WORK/corpus.txt"  # paragraphs are the documents
PYTHONPATH="$B_SRC" $PY -m babyllama prepare --data "$WORK/corpus.txt" --vocab_size 512 --valid_fraction 0.1 \
  --out "$WORK/data" > /dev/null 2>&1
run() {  # run LABEL SRC
  PYTHONPATH="$2" $PY -m babyllama pretrain --data "$WORK/data" --preset "$PRESET" --device "$DEVICE" \
    --max_steps "$STEPS" --seq_len 256 --per_device_train_batch_size "$BATCH" --eval_steps 100000 \
    --save_steps 100000 --logging_steps $((STEPS / 8)) --num_samples 0 --output_dir "$WORK/runs" --run_name "$1" \
    --disable_tqdm true > "$WORK/$1.log" 2>&1 || { tail -20 "$WORK/$1.log"; exit 1; }
}
run a1 "$A_SRC"; run b1 "$B_SRC"; run a2 "$A_SRC"; run b2 "$B_SRC"
$PY - "$WORK/runs" "$OUT" "$DEVICE" "$PRESET" "$BATCH" "${A_LABEL:-$1}" "${B_LABEL:-$2}" <<'PY'
import json, statistics, sys, time
from pathlib import Path
runs, out, device, preset, batch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
labels = {"a": sys.argv[6], "b": sys.argv[7]}
rates = {}
for name in ("a1", "b1", "a2", "b2"):
    logged = [json.loads(l) for l in (runs / name / "metrics.jsonl").read_text().splitlines()]
    windows = [m["tokens_per_second"] for m in logged if "tokens_per_second" in m][1:]
    rates[name] = statistics.median(windows)
    print(f"{name}: median {rates[name]:,.0f} tokens/s over {len(windows)} windows")
a, b = statistics.mean([rates["a1"], rates["a2"]]), statistics.mean([rates["b1"], rates["b2"]])
print(f"A {a:,.0f} tokens/s, B {b:,.0f} tokens/s: B/A = {b / a:.3f}x")
manifest = json.loads((runs / "b1" / "manifest.json").read_text())
record = {"benchmark": "loop_ab", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "device": manifest.get("device"), "labels": labels, "preset": preset, "batch": int(batch), "seq_len": 256,
          "vocab_size": 512, "rates": rates, "a": a, "b": b, "ratio_b_over_a": b / a}
path = out / f"loop-ab-{preset}-{device}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
path.write_text(json.dumps(record, indent=2, default=str) + "\n")
print(f"saved {path}")
PY
