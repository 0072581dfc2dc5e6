#!/usr/bin/env bash
# The story-instruction pipeline of issue 16, base -> SFT -> DPO -> GRPO, each stage timed by --max_time, and the
# table the README reports: share of requested words used, share of stories with every word (100 prompts built
# from valid.txt, which no stage trains on), the instruction gain (how many nats a prompt's own instruction adds to
# its words, teacher-forced: evals/instruction_gain.py) and bits/byte on the validation stories, per stage.
#   bash bench/words_pipeline.sh                         (15m, 20 min pretraining + 9 SFT + DPO + 8 GRPO: 45 min)
#   BASE=runs/my-15m bash bench/words_pipeline.sh        (skip pretraining: start from this run)
#   MIX=1 ...      pretrain on train.txt plus the instruction-format text of prepare-sft --text_out
#   SMOKE=1 ...    tiny sizes and seconds per stage: checks that the script runs, measures nothing
#   EVAL_ONLY=1 ...  only the evaluations and the table, of the runs already in $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
STORIES=${STORIES:-../shared/data/tinystories}
OUT=${OUT:-runs/words-pipeline}; PY=${PYTHON:-python3}
PRESET=${PRESET:-15m}; VOCAB=${VOCAB:-4096}
PRETRAIN_TIME=${PRETRAIN_TIME:-1200}; SFT_TIME=${SFT_TIME:-540}; DPO_TIME=${DPO_TIME:-150}; GRPO_TIME=${GRPO_TIME:-480}
SETS=${SETS:-3}; DPO_PROMPTS=${DPO_PROMPTS:-150}; PROMPTS=${PROMPTS:-100}; NEW_TOKENS=${NEW_TOKENS:-256}
SFT_ARGS=${SFT_ARGS:-"--num_train_epochs 3 --per_device_train_batch_size 16"}
GRPO_ARGS=${GRPO_ARGS:-"--num_generations 8 --per_device_train_batch_size 8 --max_completion_length 200 --max_steps 100000 --learning_rate 3e-5"}
DPO_ARGS=${DPO_ARGS:-"--num_train_epochs 3"}
PRETRAIN_ARGS=${PRETRAIN_ARGS:-}
if [ "${SMOKE:-0}" = 1 ]; then
  VOCAB=512; PRETRAIN_TIME=15; SFT_TIME=10; DPO_TIME=10; GRPO_TIME=10; SETS=2; DPO_PROMPTS=12; PROMPTS=8
  NEW_TOKENS=24; PRETRAIN_ARGS="--dim 64 --n_layers 2 --n_heads 4 --n_kv_heads 2 --max_seq_len 256 --seq_len 128"
  SFT_ARGS="--max_steps 3 --per_device_train_batch_size 4 --max_examples 200"
  GRPO_ARGS="--num_generations 4 --per_device_train_batch_size 4 --max_completion_length 24 --max_steps 2"
fi
bl() { echo "+ babyllama $*" >&2; $PY -m babyllama "$@"; }
# Seconds per stage (data, sampling and model loading included), summed into the pipeline's CPU time.
stage() { local name=$1 start=$SECONDS; shift; "$@"; echo "$name $((SECONDS - start))" >> "$OUT/stage-seconds.txt"; }
mkdir -p "$OUT/data"
DATA=$OUT/data
if [ "${EVAL_ONLY:-0}" = 1 ]; then BASE=${BASE:-$OUT/base}; fi
pretrain_stage() {
  mkdir -p "$DATA/corpus"
  ln -sf "$(realpath "$STORIES/train.txt")" "$DATA/corpus/train.txt"
  ln -sf "$(realpath "$STORIES/valid.txt")" "$DATA/corpus/valid.txt"
  if [ "${MIX:-0}" = 1 ]; then  # instruction-format documents from the training stories, TinyStoriesInstruct style
    bl prepare-sft --from_stories "$STORIES/train.txt" --out "$DATA/mix-sft.jsonl" --sets_per_story "$SETS" \
      --text_out "$DATA/corpus/train-instruct.txt"
  fi
  bl prepare --data "$DATA/corpus" --vocab_size "$VOCAB" --out "$DATA/shards"
  bl pretrain --data "$DATA/shards" --preset "$PRESET" --max_time "$PRETRAIN_TIME" $PRETRAIN_ARGS \
    --output_dir "$OUT" --run_name base --overwrite_output_dir true
}
# Examples from the training stories, fitted to the model; prompts from valid.txt for the evaluation.
sft_stage() {
  bl prepare-sft --model "$BASE" --from_stories "$STORIES/train.txt" --out "$DATA/sft.jsonl" --sets_per_story "$SETS"
  bl prepare-sft --model "$BASE" --from_stories "$STORIES/valid.txt" --out "$DATA/valid-prompts.jsonl"
  bl sft --model "$BASE" --data "$DATA/sft.jsonl" --max_time "$SFT_TIME" $SFT_ARGS --eval_size 0 \
    --output_dir "$OUT" --run_name sft --overwrite_output_dir true
}
dpo_stage() {
  bl prepare-dpo --from_words "$DATA/sft.jsonl" --model "$OUT/sft" --num_prompts "$DPO_PROMPTS" \
    --max_new_tokens "$NEW_TOKENS" --reference_chosen --out "$DATA/words-pairs.jsonl"
  bl dpo --model "$OUT/sft" --data "$DATA/words-pairs.jsonl" --max_time "$DPO_TIME" $DPO_ARGS \
    --eval_size 0.1 --output_dir "$OUT" --run_name dpo --overwrite_output_dir true
}
grpo_stage() {
  bl grpo --model "$OUT/dpo" --data "$DATA/sft.jsonl" --max_time "$GRPO_TIME" $GRPO_ARGS --eval_size 0 \
    --output_dir "$OUT" --run_name grpo --overwrite_output_dir true
}
if [ "${EVAL_ONLY:-0}" != 1 ]; then
  : > "$OUT/stage-seconds.txt"
  if [ -z "${BASE:-}" ]; then stage pretrain pretrain_stage; BASE=$OUT/base; fi
  stage sft sft_stage
  stage dpo dpo_stage
  stage grpo grpo_stage
fi
for stage in base sft dpo grpo; do
  model=$OUT/$stage; [ "$stage" = base ] && model=$BASE
  bl eval --task words --model "$model" --prompts "$DATA/valid-prompts.jsonl" --num_prompts "$PROMPTS" \
    --max_new_tokens "$NEW_TOKENS" --out "$OUT/words-$stage.json"
  bl eval --task bpb --model "$model" --text "$STORIES/valid.txt" --out "$OUT/bpb-$stage.json"
done
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| stage | requested words used | stories with every word | instruction gain (nats) | bits/byte (valid.txt) |",
         "|---|---|---|---|---|"]
for stage in ("base", "sft", "dpo", "grpo"):
    words = json.loads((out / f"words-{stage}.json").read_text())["model"]
    bpb = json.loads((out / f"bpb-{stage}.json").read_text())["bpb"]
    gain = words.get("instruction_gain")
    gain = f"{gain['gain_nats']:+.2f}" if gain else "n/a"
    lines.append(f"| {stage} | {words['word_share']:.1%} | {words['all_words']:.1%} | {gain} | {bpb:.3f} |")
seconds_file = out / "stage-seconds.txt"
if seconds_file.is_file():  # wall-clock of each stage, its data, sampling and model loading included
    seconds = dict((name, int(value)) for name, value in (line.split() for line in seconds_file.read_text().splitlines()))
    lines.append("")
    lines.append("minutes per stage: " + ", ".join(f"{name} {value / 60:.1f}" for name, value in seconds.items())
                 + f"; total {sum(seconds.values()) / 60:.1f}")
table = "\n".join(lines)
print(table)
(out / "words-table.md").write_text(table + "\n\nSample stories (GRPO):\n\n" + "\n\n".join(
    f"- {s['instruction']}\n  {s['story']}" for s in json.loads((out / "words-grpo.json").read_text())["model"]["samples"][:3]))
PY
