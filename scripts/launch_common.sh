# Shared by the launch scripts (run_*.sh, slurm_train.sh): how many processes torchrun starts on this machine,
# and with how many threads.
# One per visible GPU (CUDA_VISIBLE_DEVICES is respected), or one process on a CPU-only machine.
# NPROC_PER_NODE overrides it.
gpus_visible() {
    python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0
}
nproc_per_node() {
    if [ -n "${NPROC_PER_NODE:-}" ]; then echo "$NPROC_PER_NODE"; return; fi
    local count
    count=$(gpus_visible)
    if [ "$count" -gt 0 ]; then echo "$count"; else echo 1; fi
}

# threads_for PROCESSES: one thread per process (OMP_NUM_THREADS=1, unless it is set) in a job of several
# processes, on one node or many, so that the layout of a job's processes does not change its results (float
# reductions split differently with another thread count). torchrun alone sets it only when it starts several
# processes on a node: 2 nodes of 1 process would otherwise compute with all cores. One process keeps them all.
threads_for() {
    if [ "$1" -gt 1 ]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
}

# launch_local PROGRAM [ARGS...]: PROGRAM under torchrun on this machine, one process per GPU (or 1 on CPU).
launch_local() {
    exec torchrun --standalone --nproc_per_node="$(nproc_per_node)" "$@"
}

# launch_with "config weights" PROGRAM ARGS...: the first ARGS are the values of the named options, the
# rest go to PROGRAM as they are; too few arguments print the usage and exit 2.
launch_with() {
    local names=($1) program=$2
    shift 2
    if [ $# -lt ${#names[@]} ]; then
        echo "usage: $(basename "$0") ${names[*]^^} [$program arguments...]" >&2
        exit 2
    fi
    local options=() name
    for name in "${names[@]}"; do
        options+=("--$name" "$1")
        shift
    done
    launch_local "$program" "${options[@]}" "$@"
}
