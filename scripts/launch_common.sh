# Shared by the run_*.sh scripts: how many processes torchrun starts on this machine.
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

# launch_local PROGRAM [ARGS...]: PROGRAM under torchrun on this machine, one process per GPU (or 1 on CPU).
launch_local() {
    exec torchrun --standalone --nproc_per_node="$(nproc_per_node)" "$@"
}
