#!/usr/bin/env bash
# The ablation table on Shapes with the embedded default (SmolLM2-135M frozen, small ResNet from scratch):
#   Frozen (n=4, the config's) | Frozen, blind at test time | train-blind | LoRA-finetuned LM | prefix length n=1 | n=2
#   | captioning only (the paper's objective: no word anchor)
# Each variant is trained with the training program's options, then evaluated with the same "ablation" suite;
# all rows go into one report: outputs/ablations/report/report.md (+ report.json, plots).
#
#   bash scripts/ablations.sh                  # trains 6 models (about 10 minutes each on 2 CPU cores) + eval
#   EVAL_SCALE=0.5 bash scripts/ablations.sh   # fewer evaluation episodes
#   BASE_MODEL=outputs/shapes-smollm2 bash scripts/ablations.sh   # reuse the demo's model as the Frozen row
#   JOBS=2 bash scripts/ablations.sh           # train two variants at a time, one thread each
#
# Already trained variants (a final config.json in their folder) are not trained again.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
JOBS=${JOBS:-1}
if [ "$JOBS" -gt 1 ]; then export OMP_NUM_THREADS=1; else export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}; fi

CONFIG=${CONFIG:-frozen_hf/configs/training/shapes-smollm2.yaml}
OUT=${OUT:-outputs/ablations}
EVAL_SCALE=${EVAL_SCALE:-1}
REPORT="$OUT/report"
BASE_MODEL=${BASE_MODEL:-$OUT/frozen}

train() {  # train <folder> [training options...]
  local folder=$1; shift
  if [ -f "$folder/config.json" ]; then
    echo "== $folder: already trained"
  else
    echo "== training $folder ($*)"
    mkdir -p "$(dirname "$folder")"
    python -m training.train "$CONFIG" --output_dir "$folder" "$@" > "$folder.log" 2>&1 \
      || { echo "training $folder failed; see $folder.log"; tail -20 "$folder.log"; return 1; }
    echo "== trained $folder"
  fi
}

pending=()
queue() {  # runs `train` with at most $JOBS trainings at once
  if [ -f "$1/config.json" ]; then train "$@"; return; fi
  train "$@" &
  pending+=($!)
  if [ "${#pending[@]}" -ge "$JOBS" ]; then wait_all; fi
}
wait_all() {
  local pid status=0
  for pid in "${pending[@]}"; do wait "$pid" || status=1; done
  pending=()
  return $status
}

evaluate() {  # evaluate <folder> <row label> <variants>
  echo "== evaluating $1 as '$2'"
  python -m evaluation.run --model "$1" --suite ablation --label "$2" --variants "$3" \
    --scale "$EVAL_SCALE" --output "$REPORT"
}

start=$(date +%s)
mkdir -p "$OUT"
queue "$BASE_MODEL"
queue "$OUT/train-blind" --train_blind true
queue "$OUT/lora" --lora true
queue "$OUT/n1" --visual_prefix_length 1
queue "$OUT/n2" --visual_prefix_length 2
queue "$OUT/captioning-only" --word_anchor_weight 0
wait_all
export OMP_NUM_THREADS=${EVAL_THREADS:-2}

# The Frozen row also gives the test-time blind row and the text-oracle rows (the same frozen LM for all).
evaluate "$BASE_MODEL" "Frozen" frozen,blind,text_oracle,text_oracle_category
evaluate "$OUT/train-blind" "Frozen, train-blind" frozen
evaluate "$OUT/lora" "Frozen, LoRA-finetuned LM" frozen
evaluate "$OUT/n1" "Frozen, n=1" frozen
evaluate "$OUT/n2" "Frozen, n=2" frozen
evaluate "$OUT/captioning-only" "Frozen, captioning only (no word anchor)" frozen
python -m frozen_hf.eval.report "$REPORT" --title "Ablations on Shapes (SmolLM2-135M)"
echo "ablations: $(( $(date +%s) - start ))s; report: $REPORT/report.md"
