#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU (variables: tools/dist_common.sh):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py args, e.g. --out results.pkl]
set -euo pipefail
source "$(dirname "$0")/dist_common.sh"
dist_need 3 "CONFIG CHECKPOINT NUM_PROCS [tools/test.py args]" $#
dist_run "$3" "$(dirname "$0")/test.py" "$1" "$2" --launcher pytorch "${@:4}"
