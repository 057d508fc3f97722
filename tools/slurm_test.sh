#!/usr/bin/env bash
# Testing (evaluating) a checkpoint on a Slurm cluster, one task per GPU, with mmdet's arguments and variables:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py args, e.g. --out r.pkl]
# The variables (and GRES, MASTER_PORT, MASTER_ADDR, PYTHON) are those of tools/slurm_train.sh.
set -euo pipefail
source "$(dirname "$0")/slurm_common.sh"
slurm_need 4 "CONFIG CHECKPOINT [tools/test.py args]" $#
slurm_run "$1" "$2" "$(dirname "$0")/test.py" "$3" "$4" --launcher=slurm "${@:5}"
