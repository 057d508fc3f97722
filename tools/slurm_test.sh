#!/usr/bin/env bash
# Testing (evaluating) a checkpoint on a Slurm cluster, one task per GPU, with mmdet's arguments and variables:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py args, e.g. --out r.pkl]
# The variables (and GRES, MASTER_PORT, MASTER_ADDR, PYTHON) are those of tools/slurm_train.sh.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT" \
        "[tools/test.py args]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
source "$(dirname "$0")/slurm_common.sh"
slurm_run "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher=slurm "$@"
