#!/usr/bin/env bash
# GPU acceptance check in one command (docs/cluster.md):
#   bash tools/gpu_check.sh [--dry-run] [--work-dir DIR]
# 1. the environment: tools/bootstrap.sh (nothing to do when .venv is complete); when torch sees a GPU but mmcv's
#    ops were built without CUDA, .venv is rebuilt, which builds mmcv with CUDA once and caches the wheel per
#    machine like every mmcv build (needs the CUDA toolkit's nvcc, matching torch's CUDA version);
# 2. tools/misc/gpu_check.py: the gpu-marked tests, the demo trained for one epoch and evaluated, the CUDA
#    benchmark, one summary. --dry-run changes nothing: it prints what step 1 would do and checks the commands.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
DRY=0
for arg in "$@"; do
    [[ "$arg" == --dry-run ]] && DRY=1
done
# exit 0 when mmcv's ops can run on what torch sees (no GPU, or ops built with CUDA)
OPS_OK='import sys, torch
from mmcv.ops import get_compiling_cuda_version as v
sys.exit(0 if not torch.cuda.is_available() or v() != "not available" else 1)'

if ((DRY)); then
    echo "gpu_check: dry run: would run: bash tools/bootstrap.sh (installs nothing when .venv is complete)"
    if [[ -x "$PY" ]] && ! "$PY" -c "$OPS_OK" 2>/dev/null; then
        echo "gpu_check: dry run: would rebuild .venv: torch sees a GPU but mmcv's ops lack CUDA"
    fi
    [[ -x "$PY" ]] || { echo "gpu_check: no .venv yet: run 'make env' (or this without --dry-run) first" >&2; exit 2; }
else
    bash tools/bootstrap.sh
    if ! "$PY" -c "$OPS_OK"; then
        NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
        command -v nvcc >/dev/null 2>&1 || [[ -x "$NVCC" ]] || {
            echo "gpu_check: torch sees a GPU but mmcv's ops were built without CUDA, and building them needs the" \
                "CUDA toolkit's nvcc (torch's CUDA $("$PY" -c 'import torch; print(torch.version.cuda)')):" \
                "install it and set CUDA_HOME, then run this again" >&2
            exit 1
        }
        echo "gpu_check: torch sees a GPU but mmcv's ops were built without CUDA: rebuilding .venv with them"
        rm -f "$ROOT/.venv/.mmbasis-env"
        bash tools/bootstrap.sh
        "$PY" -c "$OPS_OK" || { echo "gpu_check: mmcv's ops still lack CUDA after the rebuild" >&2; exit 1; }
    fi
fi
exec "$PY" tools/misc/gpu_check.py "$@"
