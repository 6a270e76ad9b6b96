# Sourced by the setup scripts of the extra environments (.venv-lowest, .venv-vllm): PYTHON and the two steps that
# each of them starts with.
PYTHON=${PYTHON:-python3}

# True when the environment $1 exists and the Python check $2 passes in it (it is set up: nothing to do).
venv_ready() {
  [ -x "$1/bin/python" ] && "$1/bin/python" -c "$2" 2>/dev/null
}

# Creates the environment $1 (if needed) with a current pip and the CPU torch, installed first so that no dependency
# pulls a CUDA build.
create_cpu_torch_venv() {
  if [ ! -x "$1/bin/python" ]; then
    "$PYTHON" -m venv "$1"
  fi
  "$1/bin/python" -m pip install -q --upgrade pip
  "$1/bin/python" -m pip install -q "torch==2.13.0"
}
