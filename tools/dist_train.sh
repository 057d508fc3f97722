#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU (variables: tools/dist_common.sh):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py args, e.g. --work-dir DIR --resume]
set -euo pipefail
source "$(dirname "$0")/dist_common.sh"
dist_need 2 "CONFIG NUM_PROCS [tools/train.py args]" $#
dist_run "$2" "$(dirname "$0")/train.py" "$1" --launcher pytorch "${@:3}"
