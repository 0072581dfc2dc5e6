#!/usr/bin/env bash
# The real pipeline on a GPU, end to end, on a bare machine: prepare (from this repository's own docs as a small
# corpus), `babyllama pretrain` with the CUDA defaults (bf16, torch.compile, pinned int32 batches prefetched in
# a thread), sample, export. Proves the training loop's CUDA paths, which bench/throughput.py does not use.
# Writes the run's manifest/metrics and a log to $OUT (default bench/results/gpu).
#   CPU dry run:  DEVICE=cpu STEPS=6 bash bench/gpu_smoke.sh
set -euxo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-200}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
# paragraphs are the documents (the story separator the README mentions would split it otherwise)
cat README.md docs/*.md | sed "s/<.endoftext.>//g" > "$WORK/corpus.txt"
$PY -m babyllama prepare --data "$WORK/corpus.txt" --vocab_size 512 --valid_fraction 0.1 --out "$WORK/data"
$PY -m babyllama pretrain --data "$WORK/data" --preset 15m --device "$DEVICE" --max_steps "$STEPS" --seq_len 256 \
  --per_device_train_batch_size 32 --eval_steps $((STEPS / 2)) --save_steps $((STEPS / 2)) --logging_steps 10 \
  --num_samples 1 --output_dir "$WORK/runs" --run_name smoke --disable_tqdm true 2>&1 | tee "$OUT/smoke-$DEVICE-log.txt"
$PY -m babyllama sample --model "$WORK/runs/smoke" --prompt "The" --max_new_tokens 40 --seed 0 --device "$DEVICE"
$PY -m babyllama export --model "$WORK/runs/smoke" --format hf --out "$WORK/exported"
$PY -m babyllama runs show smoke --runs_dir "$WORK/runs"
cp "$WORK/runs/smoke/manifest.json" "$OUT/smoke-$DEVICE-manifest.json"
cp "$WORK/runs/smoke/metrics.jsonl" "$OUT/smoke-$DEVICE-metrics.jsonl"
