#!/usr/bin/env bash
# Distributed training with torchrun (one process per GPU; on CPU the gloo backend is used):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [extra tools/train.py args]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), PYTHON (python).
set -euo pipefail
CONFIG=$1
GPUS=$2
shift 2
POS=("$CONFIG")
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/train.py" "${POS[@]}" --launcher pytorch "$@"
