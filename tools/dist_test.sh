#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU (on a machine without CUDA: CPU processes over
# gloo, see mmbasis/utils/cli.py setup_cpu_distributed):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py args, e.g. --out results.pkl]
# Environment (as mmdet's): NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
# PYTHON (python; e.g. PYTHON=.venv/bin/python).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: bash $0 CONFIG CHECKPOINT NUM_PROCS [tools/test.py args]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROCS=$3
shift 3
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROCS" --master_port="${PORT:-29500}" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
