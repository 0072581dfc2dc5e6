#!/usr/bin/env bash
# Every GPU measurement of issues 5 and 12 in one call, at most 8 minutes (BUDGET_S, default 450 s, plus one stage's
# kill margin): JSON and logs into $OUT (default bench/results/gpu), a summary table at the end.
#   1. the fused-loss agreement check (bench/loss_check.py): max abs difference of the loss and gradients of each
#      loss_impl vs standard, op level (15m's 32768 x 32000) and whole model, bf16 and fp32, body compiled;
#   2. the throughput table (bench/throughput.py): ours vs the compiled LlamaForCausalLM loop vs transformers.Trainer
#      at 15m (vocab 32000, 128 x 256) and 110m (16 x 1024), bf16 + compile; tokens/s, MFU, peak memory; each
#      loss_impl (standard, liger, cce; the Triton ones eager after the compiled body);
#   3. fp16 vs bf16: bench/gpu_smoke.sh (the real pretrain loop) once in each, same seed; the loss curves side by side
#      in smoke-curves.json; meanwhile, on the CPU, the 16-worker `prepare` measurement (bench/prepare.py, if present);
#   4. gradient checkpointing on (ours, HF loop, Trainer) at 110m and 15m; CUDA graphs (compile=reduce-overhead) on.
# Stages run most-important first and are skipped once the budget is spent, so a slow compile cannot lose the
# headline numbers. Liger Kernel / cut-cross-entropy are installed from wheels in .whl/ when present (the GPU machine
# is offline):  pip download --no-deps liger-kernel cut-cross-entropy -d .whl
#
# Run from the repository root on a bare GPU machine (needs torch + transformers; babyllama is read from src/):
#   bash bench/gpu.sh
# CPU dry run of the same code paths (tiny shapes, no compile, a few seconds per stage):
#   DRY_RUN=1 OUT=/tmp/dry bash bench/gpu.sh
# PLAN=explore runs profiles and candidate fast paths instead.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu-log.txt"
BUDGET_S=${BUDGET_S:-450}
LIMIT_SCALE=1  # stage time limits are multiplied by this (dry runs on a slow, shared CPU need more)
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

for wheel in .whl/liger_kernel-*.whl .whl/cut_cross_entropy-*.whl; do
  [ -e "$wheel" ] || continue
  module=$(basename "$wheel" | cut -d- -f1)
  if ! $PY -c "import $module" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-site "$wheel" \
      && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-site"
  fi
done
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__, '| cuda', torch.cuda.is_available())"
  for module in liger_kernel cut_cross_entropy; do
    $PY -c "import $module" 2>/dev/null && echo "$module available" || echo "$module not available (its loss_impl falls back to chunked)"
  done
} 2>&1 | tee -a "$LOG"

if [ "${DRY_RUN:-0}" = 1 ]; then
  # Same stages, tiny and on CPU: checks the script and every runner's code path, not speed.
  DEV=(--device cpu --force_compile none)
  S15=(--preset 260k --vocab_size 512 --seq_len 32 --batch 2 --warmup 1 --steps 1)
  S110=(--preset 260k --vocab_size 512 --seq_len 64 --batch 2 --warmup 1 --steps 1)
  CHECK=(--device cpu --rows 256 --vocab 512 --model_preset 260k --model_batch 2 --seq_len 32 --precision bf16 fp32)
  SMOKE=(DEVICE=cpu STEPS=4 LOG_STEPS=1 PRESET=260k BATCH=4 SEQ_LEN=64)
  SMOKE_PRECISIONS="fp32 bf16"  # --fp16 needs a GPU (and bf16 is slow but tiny here)
  PREPARE=(--mb 2 --workers 1 2)
  DL=(--device cpu --synthetic_tokens 200000 --steps 20)
  LIMIT_SCALE=${LIMIT_SCALE_DRY:-6}
  BUDGET_S=$((BUDGET_S * LIMIT_SCALE))
else
  DEV=(--device cuda --bf16 --compile default)
  S15=(--preset 15m --vocab_size 32000 --seq_len 256 --batch 128 --warmup 3 --steps 15)
  S110=(--preset 110m --vocab_size 32000 --seq_len 1024 --batch 16 --warmup 3 --steps 8)
  CHECK=(--device cuda --precision bf16 fp32 --compile)
  SMOKE=(DEVICE=cuda STEPS=150 LOG_STEPS=10)
  SMOKE_PRECISIONS="fp16 bf16"
  PREPARE=(--mb 200 --workers 1 16)
  DL=(--device cuda --synthetic_tokens 20000000 --steps 200)
fi

budget_left() {  # budget_left LIMIT: prints the stage's limit, or nothing when the budget is spent
  local limit=$(($1 * LIMIT_SCALE)) left=$((BUDGET_S - SECONDS))
  [ "$left" -lt $((30 * LIMIT_SCALE)) ] && return 1
  [ "$limit" -gt "$left" ] && limit=$left
  echo "$limit"
}

stage() {  # stage SECONDS_LIMIT ARGS...: one throughput.py process, skipped when the budget is spent
  local limit
  limit=$(budget_left "$1") || { echo "=== skipped (budget spent, ${SECONDS}s elapsed): throughput.py ${*:2}" | tee -a "$LOG"; return; }
  shift
  echo "=== ${SECONDS}s: throughput.py $* (limit ${limit}s)" | tee -a "$LOG"
  timeout -k 10 "$limit" $PY bench/throughput.py "${DEV[@]}" --out "$OUT" "$@" 2>&1 | tee -a "$LOG"
}

loss_check() {
  local limit
  limit=$(budget_left "$1") || { echo "=== skipped loss check" | tee -a "$LOG"; return; }
  echo "=== ${SECONDS}s: loss_check.py (limit ${limit}s)" | tee -a "$LOG"
  timeout -k 10 "$limit" $PY bench/loss_check.py "${CHECK[@]}" --out "$OUT" 2>&1 | tee -a "$LOG"
}

prepare_bench() {  # the data issue's `prepare` with 1 and 16 workers (CPU only; bench/prepare.py is another helper's)
  if [ ! -f bench/prepare.py ]; then
    echo "=== bench/prepare.py is not in this tree: the 16-worker prepare measurement is skipped" | tee -a "$LOG"
    return
  fi
  echo "=== ${SECONDS}s: prepare.py ${PREPARE[*]} (in the background, limit $((150 * LIMIT_SCALE))s)" | tee -a "$LOG"
  timeout -k 10 $((150 * LIMIT_SCALE)) $PY bench/prepare.py "${PREPARE[@]}" --out "$OUT" > "$OUT/prepare-log.txt" 2>&1
  echo "=== prepare.py finished (rc $?): $OUT/prepare-log.txt" >> "$LOG"
}

smoke_pair() {  # the real loop in forced fp16 and bf16 (same seed and data), then the curves side by side
  local limit
  limit=$(budget_left "$1") || { echo "=== skipped smoke runs" | tee -a "$LOG"; return; }
  local each=$((limit / 2))
  for precision in $SMOKE_PRECISIONS; do
    echo "=== ${SECONDS}s: gpu_smoke.sh PRECISION=$precision (limit ${each}s)" | tee -a "$LOG"
    env "${SMOKE[@]}" PRECISION="$precision" OUT="$OUT" timeout -k 10 "$each" bash bench/gpu_smoke.sh >> "$LOG" 2>&1 \
      || echo "=== gpu_smoke.sh PRECISION=$precision FAILED or timed out (see the log)" | tee -a "$LOG"
  done
  $PY - "$OUT" $SMOKE_PRECISIONS <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
out, names = Path(sys.argv[1]), sys.argv[2:]
curves = {}
for name in names:
    found = sorted(out.glob(f"smoke-*-{name}-metrics.jsonl"))
    rows = [json.loads(line) for line in found[-1].read_text().splitlines()] if found else []
    curves[name] = {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}
steps = sorted(set.intersection(*(set(c) for c in curves.values()))) if all(curves.values()) else []
table = [{"step": s, **{n: curves[n][s] for n in names}} for s in steps]
a, b = names
gap = max((abs(r[a] - r[b]) for r in table), default=None)
record = {"benchmark": "smoke-curves", "precisions": names, "curves": table, "max_abs_loss_gap": gap}
(out / "smoke-curves.json").write_text(json.dumps(record, indent=2) + "\n")
print(f"{'step':>6} " + " ".join(f"{n:>10}" for n in names))
for r in table:
    print(f"{r['step']:>6} " + " ".join(f"{r[n]:>10.4f}" for n in names))
print(f"max |{a} - {b}| loss gap: {gap}" if gap is not None else "no common logged steps (a run failed?)")
EOF
}

dataloader() {
  local limit
  limit=$(budget_left 60) || { echo "=== skipped dataloader" | tee -a "$LOG"; return; }
  echo "=== ${SECONDS}s: dataloader (limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" $PY bench/dataloader.py "${DL[@]}" --vocab_size 32000 --batch 128 --seq_len 256 \
    --preset 15m --out "$OUT" 2>&1 | tee -a "$LOG"
}

profile() {  # profile SECONDS_LIMIT ARGS...: bench/profile_step.py, the top kernels of one runner's step
  local limit
  limit=$(budget_left "$1") || { echo "=== skipped profile: ${*:2}" | tee -a "$LOG"; return; }
  shift
  echo "=== ${SECONDS}s: profile_step.py $* (limit ${limit}s)" | tee -a "$LOG"
  timeout -k 10 "$limit" $PY bench/profile_step.py "${DEV[@]}" --out "$OUT" --steps 3 "$@" 2>&1 | tee -a "$LOG"
}

if [ "${PLAN:-main}" = main ]; then
  # 1. Do the fused kernels compute the standard loss (op and whole model, bf16 and fp32)?
  loss_check 60
  # 2. Headline table: ours (auto) vs HF loop vs Trainer; each loss_impl of ours (standard = today's auto on CUDA).
  stage 130 "${S15[@]}" --tag 15m-main --runners ours hf trainer ours:loss=liger ours:loss=cce ours:loss=chunked
  stage 110 "${S110[@]}" --tag 110m-main --runners ours hf trainer ours:loss=liger ours:loss=cce
  # 3. fp16 vs bf16 in the real loop; the CPU-only prepare measurement runs meanwhile (it does not touch the GPU).
  prepare_bench &
  PREPARE_PID=$!
  smoke_pair 100
  wait "$PREPARE_PID"
  # 4. Memory (gradient checkpointing) and launch overhead (CUDA graphs), with the fused loss too.
  stage 70 "${S110[@]}" --tag 110m-gc --runners ours:gc=on ours:loss=fused,gc=on hf:gc=on trainer:gc=on
  stage 60 "${S15[@]}" --tag 15m-graphs --runners ours:compile=reduce-overhead \
    ours:loss=fused,compile=reduce-overhead ours:gc=on
  dataloader
else
  # PLAN=explore: where the step's time goes, and the candidate fast paths against the same-run baseline.
  profile 60 "${S15[@]}" --tag 15m --runners ours
  profile 60 "${S15[@]}" --tag 15m-fused --runners ours:loss=fused
  profile 70 "${S110[@]}" --tag 110m --runners ours
  stage 200 "${S15[@]}" --tag 15m-autotune --runners ours ours:compile=max-autotune-no-cudagraphs
fi

echo "=== done in ${SECONDS}s; results in $OUT" | tee -a "$LOG"
$PY bench/summarize.py "$OUT" 2>&1 | tee -a "$LOG"
