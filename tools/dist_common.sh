# The torchrun command line shared by tools/dist_train.sh and tools/dist_test.sh (sourced, not run).
# Environment (as mmdet's): NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
# PYTHON (python; e.g. PYTHON=.venv/bin/python).

# dist_need N USAGE ARGC: exit 2 with the usage unless ARGC >= N
dist_need() {
    if [ "$3" -lt "$1" ]; then
        echo "usage: bash $0 $2" >&2
        exit 2
    fi
}

# dist_run NPROCS SCRIPT ARGS...: torchrun SCRIPT ARGS on NPROCS processes per node (on a machine without CUDA: CPU
# processes over gloo, see mmbasis/compat/distributed.py)
dist_run() {
    local nprocs=$1
    shift
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$nprocs" --master_port="${PORT:-29500}" "$@"
}
