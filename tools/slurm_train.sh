#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU, with mmdet's arguments and variables:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py args, e.g. --resume]
# GPUS is the number of tasks (processes) in all, GPUS_PER_NODE the tasks per node; each task asks for
# CPUS_PER_TASK CPUs. SRUN_ARGS is split into words and added to srun's options (e.g. "--time=24:00:00").
# The rest of the arguments (mmdet's PY_ARGS) go to tools/train.py unchanged.
# Environment of our own:
#   GRES (default gpu:$GPUS_PER_NODE): the generic resources each node is asked for; GRES=none asks for none
#       (a CPU-only partition: the tasks then train on the CPU, over gloo; see docs/cluster.md)
#   MASTER_PORT (default 29500): the rendezvous port on the first node of the job (mmengine's slurm launcher)
#   MASTER_ADDR (default: the first node of the job, from `scontrol show hostnames`)
#   PYTHON (python; e.g. PYTHON=.venv/bin/python)
set -euo pipefail
source "$(dirname "$0")/slurm_common.sh"
slurm_need 4 "CONFIG WORK_DIR [tools/train.py args]" $#
slurm_run "$1" "$2" "$(dirname "$0")/train.py" "$3" --work-dir="$4" --launcher=slurm "${@:5}"
