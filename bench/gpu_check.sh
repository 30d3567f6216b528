#!/usr/bin/env bash
# The GPU checks of docs/gpu.md, for a machine with a CUDA GPU, in a few minutes: the device tests (which skip
# without a GPU, so this stops first where torch sees none), then paths/s on the GPU and the CPU in the same run.
#
#   bench/gpu_check.sh [bench.device_throughput flags, e.g. --seconds 10 --gpu-batch-paths 8192]
#
# Run from anywhere, after `make setup`; PYTHON overrides the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

"$python" - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) sees no CUDA GPU here; "
             "nothing to check (CPU figures alone: python -m bench.device_throughput)")
print(f"gpu_check: {torch.cuda.get_device_name()} with torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi

echo "== device tests"
"$python" -m pytest -q -p no:cacheprovider -rs tests/simulator/test_device.py tests/trainer/test_device.py

echo "== paths/s, CPU and GPU in the same run"
"$python" -m bench.device_throughput "$@"
