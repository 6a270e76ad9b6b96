#!/usr/bin/env bash
# Creates ./.venv-timm for the optional timm backbones (the paper's NF-ResNet-50).
# timm needs torchvision, and PyPI's torchvision does not import beside the CPU torch 2.13.0 build of .venv,
# so timm lives in a venv of its own with a matching torch/torchvision pair (a large CUDA build that also runs on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -x .venv-timm/bin/python ] && .venv-timm/bin/python -c "import timm, torchvision, frozen_hf" 2>/dev/null; then
  exit 0
fi
"$PYTHON" -m venv .venv-timm
.venv-timm/bin/python -m pip install -q --upgrade pip
.venv-timm/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv-timm/bin/python -m pip install -q -e ".[timm]"
