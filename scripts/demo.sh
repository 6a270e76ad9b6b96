#!/usr/bin/env bash
# README command 1: set up, train the default Frozen model on the Shapes world, evaluate it.
#   bash scripts/demo.sh [--field value ...]    (extra training-config overrides, e.g. --max_steps 300)
#
# The bundled SmolLM2-135M-Instruct stays frozen; a small ResNet learns from scratch to speak to it
# (frozen_hf/configs/training/shapes-smollm2.yaml). Then greedy captions of held-out Shapes images are scored
# with the Shapes caption checker (every attribute of every object must be right), and the demo
# evaluation suite runs. Everything lands in outputs/shapes-smollm2/ (model, processor,
# training_log.json, loss_curve.png, runs/ for TensorBoard, eval/report.md).
# A finished run is reused; an interrupted one resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start ))s] $*"; }

stamp "setup"
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export TOKENIZERS_PARALLELISM=false

CONFIG=${CONFIG:-frozen_hf/configs/training/shapes-smollm2.yaml}
OUT=${OUT:-outputs/shapes-smollm2}

if [ -f "$OUT/training_log.json" ] && grep -q '"status": "complete"' "$OUT/training_log.json"; then
  stamp "training: $OUT is already trained"
else
  stamp "training ($CONFIG -> $OUT)"
  python -m training.train "$CONFIG" --output_dir "$OUT" --resume_from_checkpoint auto "$@"
fi

# The demo suite (frozen_hf/eval/suites.py, docs/evaluation.md): 200 held-out captions (40 blind), VQA 0-shot,
# open-ended, real-name and fast-VQA binding at 100 queries a cell in the compact, paper and adjacent layouts;
# Frozen, blind and both text-oracle rows.
stamp "evaluation suite"
python -m evaluation.run --model "$OUT" --suite demo --output "$OUT/eval"
stamp "done: $OUT/eval/report.md, $OUT/loss_curve.png, TensorBoard: tensorboard --logdir $OUT/runs"
