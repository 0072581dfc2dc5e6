#!/usr/bin/env bash
# The real pipeline on a GPU, end to end, on a bare machine: prepare (from this repository's own docs as a small
# corpus), `babyllama pretrain` with the CUDA defaults (bf16, torch.compile, pinned int32 batches prefetched in
# a thread), sample, export. Proves the training loop's CUDA paths, which bench/throughput.py does not use.
# Writes the run's manifest/metrics and a log to $OUT (default bench/results/gpu), named smoke-$DEVICE[-$PRECISION].
# PRECISION=bf16|fp16|fp32 forces the autocast dtype (default: the card's, see train/device.py); the same seed and
# data, so two runs' loss curves can be laid side by side (bench/gpu.sh does: fp16 vs bf16).
#   CPU dry run:  DEVICE=cpu STEPS=6 bash bench/gpu_smoke.sh
set -euxo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-200}
PRESET=${PRESET:-15m} BATCH=${BATCH:-32} SEQ_LEN=${SEQ_LEN:-256}  # dry runs on a CPU use a tiny shape
PRECISION=${PRECISION:-}
case "$PRECISION" in
  bf16) PREC_FLAGS=(--bf16 true --fp16 false) ;;
  fp16) PREC_FLAGS=(--bf16 false --fp16 true) ;;
  fp32) PREC_FLAGS=(--bf16 false --fp16 false) ;;
  "") PREC_FLAGS=() ;;
  *) echo "PRECISION=$PRECISION: use bf16, fp16 or fp32" >&2; exit 2 ;;
esac
NAME=smoke-$DEVICE${PRECISION:+-$PRECISION}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
# paragraphs are the documents (the story separator the README mentions would split it otherwise)
cat README.md docs/*.md | sed "s/<.endoftext.>//g" > "$WORK/corpus.txt"
$PY -m babyllama prepare --data "$WORK/corpus.txt" --vocab_size 512 --valid_fraction 0.1 --out "$WORK/data"
$PY -m babyllama pretrain --data "$WORK/data" --preset "$PRESET" --device "$DEVICE" --max_steps "$STEPS" \
  --seq_len "$SEQ_LEN" --per_device_train_batch_size "$BATCH" --eval_steps $((STEPS / 2)) --save_steps $((STEPS / 2)) --logging_steps "${LOG_STEPS:-10}" \
  --num_samples 1 --output_dir "$WORK/runs" --run_name smoke --disable_tqdm true --seed 0 ${PREC_FLAGS[@]+"${PREC_FLAGS[@]}"} \
  2>&1 | tee "$OUT/$NAME-log.txt"
$PY -m babyllama sample --model "$WORK/runs/smoke" --prompt "The" --max_new_tokens 40 --seed 0 --device "$DEVICE"
$PY -m babyllama export --model "$WORK/runs/smoke" --format hf --out "$WORK/exported"
$PY -m babyllama runs show smoke --runs_dir "$WORK/runs"
cp "$WORK/runs/smoke/manifest.json" "$OUT/$NAME-manifest.json"
cp "$WORK/runs/smoke/metrics.jsonl" "$OUT/$NAME-metrics.jsonl"
