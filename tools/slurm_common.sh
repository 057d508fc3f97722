# The srun command line shared by tools/slurm_train.sh and tools/slurm_test.sh (sourced, not run).
# Reads GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, GRES, PYTHON.

# slurm_need N ARGS_USAGE ARGC: exit 2 with the usage unless ARGC >= N
slurm_need() {
    if [ "$3" -lt "$1" ]; then
        echo "usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] bash $0 PARTITION JOB_NAME $2" >&2
        exit 2
    fi
}

slurm_die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

slurm_positive_int() {  # slurm_positive_int NAME VALUE
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || slurm_die "$1 must be a positive integer, got '$2'"
}

# slurm_run PARTITION JOB_NAME SCRIPT ARGS...: srun SCRIPT on GPUS tasks, GPUS_PER_NODE per node, each with
# CPUS_PER_TASK CPUs.
slurm_run() {
    local PARTITION=$1 JOB_NAME=$2
    shift 2
    local gpus="${GPUS:-8}" per_node="${GPUS_PER_NODE:-8}" cpus="${CPUS_PER_TASK:-5}" gres
    slurm_positive_int GPUS "$gpus"
    slurm_positive_int GPUS_PER_NODE "$per_node"
    slurm_positive_int CPUS_PER_TASK "$cpus"
    [ -n "$PARTITION" ] || slurm_die "PARTITION must not be empty"
    [ -n "$JOB_NAME" ] || slurm_die "JOB_NAME must not be empty"
    command -v srun >/dev/null 2>&1 \
        || slurm_die "srun not found: run this on a Slurm cluster's login node (elsewhere: tools/dist_train.sh)"
    # fewer tasks than GPUS_PER_NODE (e.g. GPUS=1 on 8-GPU nodes): one node with GPUS tasks
    if ((gpus < per_node)); then
        per_node=$gpus
    fi
    gres="${GRES:-gpu:$per_node}"
    local cmd=(srun -p "$PARTITION" --job-name="$JOB_NAME")
    if [ "$gres" != none ]; then
        cmd+=(--gres="$gres")
    fi
    cmd+=(--ntasks="$gpus" --ntasks-per-node="$per_node" --cpus-per-task="$cpus" --kill-on-bad-exit=1)
    local srun_args=()
    read -r -a srun_args <<<"${SRUN_ARGS:-}"
    cmd+=("${srun_args[@]}" "${PYTHON:-python}" -u "$@")
    echo "+ ${cmd[*]}" >&2
    # like mmdet's scripts: the repository on the path, so that the configs' custom_imports find mmbasis
    PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" exec "${cmd[@]}"
}
