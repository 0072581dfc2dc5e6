#!/usr/bin/env bash
# Every GPU measurement of issue 5 in one script: babyllama vs LlamaForCausalLM (compiled plain loop) vs
# transformers.Trainer at 15m (vocab 32000, seq 256, batch 128) and 110m (seq 1024, batch 16), bf16 + compile,
# tokens/s, MFU and peak memory; then the fast paths (chunked loss vs standard, Liger, CUDA graphs).
#
# Run from the repository root on a bare GPU machine (needs only torch + transformers; babyllama is read from
# src/). JSON results go to $OUT (default bench/results/gpu); the log to $OUT/gpu-log.txt; a summary table at
# the end. Stages run most-important first and are skipped once the time budget (BUDGET_S, default 380 s) is
# spent, so a slow compile cannot lose the headline numbers. Liger Kernel is used when a wheel is in .whl/.
#
# PLAN=explore runs profiles and candidate fast paths instead of the headline table.
# CPU dry run of the same code paths (tiny shapes, a few seconds per stage):  DRY_RUN=1 bash bench/gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu-log.txt"
BUDGET_S=${BUDGET_S:-380}
LIMIT_SCALE=1  # stage time limits are multiplied by this (dry runs on a slow, shared CPU need more)
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

if ls .whl/liger_kernel-*.whl >/dev/null 2>&1 && ! $PY -c "import liger_kernel" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/liger-site .whl/liger_kernel-*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/liger-site"
fi
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__, '| cuda', torch.cuda.is_available())"
  $PY -c "import liger_kernel; print('liger_kernel available')" 2>/dev/null || echo "liger_kernel not available (the liger runner will fall back to chunked)"
} 2>&1 | tee -a "$LOG"

if [ "${DRY_RUN:-0}" = 1 ]; then
  # Same stages, tiny and on CPU: checks the script and every runner's code path, not speed.
  DEV=(--device cpu --force_compile none)
  S15=(--preset 260k --vocab_size 512 --seq_len 32 --batch 2 --warmup 1 --steps 1)
  S110=(--preset 260k --vocab_size 512 --seq_len 64 --batch 2 --warmup 1 --steps 1)
  DL=(--device cpu --synthetic_tokens 200000 --steps 20)
  LIMIT_SCALE=${LIMIT_SCALE_DRY:-6}
  BUDGET_S=$((BUDGET_S * LIMIT_SCALE))
else
  DEV=(--device cuda --bf16 --compile default)
  S15=(--preset 15m --vocab_size 32000 --seq_len 256 --batch 128 --warmup 3 --steps 20)
  S110=(--preset 110m --vocab_size 32000 --seq_len 1024 --batch 16 --warmup 3 --steps 10)
  DL=(--device cuda --synthetic_tokens 20000000 --steps 200)
fi

stage() {  # stage SECONDS_LIMIT ARGS...: one throughput.py process, skipped when the budget is spent
  local limit=$(($1 * LIMIT_SCALE)); shift
  local left=$((BUDGET_S - SECONDS))
  if [ "$left" -lt $((45 * LIMIT_SCALE)) ]; then
    echo "=== skipped (budget spent, ${SECONDS}s elapsed): $*" | tee -a "$LOG"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== ${SECONDS}s: throughput.py $* (limit ${limit}s)" | tee -a "$LOG"
  timeout -k 10 "$limit" $PY bench/throughput.py "${DEV[@]}" --out "$OUT" "$@" 2>&1 | tee -a "$LOG"
}

profile() {  # profile SECONDS_LIMIT ARGS...: bench/profile_step.py, the top kernels of one runner's step
  local limit=$(($1 * LIMIT_SCALE)); shift
  local left=$((BUDGET_S - SECONDS))
  [ "$left" -lt $((45 * LIMIT_SCALE)) ] && { echo "=== skipped profile: $*" | tee -a "$LOG"; return; }
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== ${SECONDS}s: profile_step.py $* (limit ${limit}s)" | tee -a "$LOG"
  timeout -k 10 "$limit" $PY bench/profile_step.py "${DEV[@]}" --out "$OUT" --steps 3 "$@" 2>&1 | tee -a "$LOG"
}

dataloader() {
  echo "=== ${SECONDS}s: dataloader" | tee -a "$LOG"
  timeout $((60 * LIMIT_SCALE)) $PY bench/dataloader.py "${DL[@]}" --vocab_size 32000 --batch 128 --seq_len 256 \
    --preset 15m --out "$OUT" 2>&1 | tee -a "$LOG"
}

if [ "${PLAN:-main}" = main ]; then
  # 1. Headline: ours vs the compiled LlamaForCausalLM loop vs Trainer; ours with the standard loss = "before".
  stage 200 "${S15[@]}" --tag 15m-main --runners ours hf trainer ours:loss=standard
  stage 170 "${S110[@]}" --tag 110m-main --runners ours hf
  # 2. Fast paths: Liger's fused linear+CE, CUDA graphs (reduce-overhead); 110m before/after and its Trainer.
  stage 120 "${S15[@]}" --tag 15m-paths --runners ours:loss=liger ours:compile=reduce-overhead
  stage 120 "${S110[@]}" --tag 110m-paths --runners ours:loss=standard trainer
  # 3. The batch pipeline against the model's rate (pinned host memory, non-blocking copies).
  dataloader
else
  # PLAN=explore: where the step's time goes, and the candidate fast paths against the same-run baseline.
  profile 60 "${S15[@]}" --tag 15m --runners ours
  profile 70 "${S110[@]}" --tag 110m --runners ours
  dataloader
  stage 200 "${S15[@]}" --tag 15m-autotune --runners ours ours:compile=max-autotune-no-cudagraphs
fi

echo "=== done in ${SECONDS}s; results in $OUT" | tee -a "$LOG"
$PY bench/summarize.py "$OUT" 2>&1 | tee -a "$LOG"
