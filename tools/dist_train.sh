#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU (on a machine without CUDA: CPU processes over
# gloo, see mmbasis/utils/cli.py setup_cpu_distributed):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py args, e.g. --work-dir DIR --resume]
# Environment (as mmdet's): NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
# PYTHON (python; e.g. PYTHON=.venv/bin/python).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG NUM_PROCS [tools/train.py args]" >&2
    exit 2
fi
CONFIG=$1
NPROCS=$2
shift 2
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROCS" --master_port="${PORT:-29500}" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
