#!/usr/bin/env bash
# Train under Slurm; submit from the repository's folder (docs/clusters.md):
#   sbatch [sbatch options] scripts/slurm_train.sh CONFIG [train.py options and key=value overrides]
#   sbatch --nodes=2 --gpus-per-node=8 --cpus-per-task=64 --time=24:00:00 scripts/slurm_train.sh CONFIG
# One torchrun per node (srun), one process per GPU the node's step sees (NPROC_PER_NODE overrides it), the
# rendezvous on the allocation's first node at a port derived from the job id (MASTER_PORT overrides it).
# The run folder is named after the job id (--log_time) and resume=auto continues from its newest checkpoint,
# so a requeued job goes on where it stopped: USR1 120 s before the time limit, or the SIGTERM of a
# preemption, makes train.py stop all processes at one step, write a checkpoint and requeue the job.
# PROGRAM=train_co.py trains the attributes branch instead of train.py.
#SBATCH --job-name=bike
#SBATCH --ntasks-per-node=1
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
set -euo pipefail
[ -f train.py ] || { echo "error: submit from the repository's folder: sbatch scripts/slurm_train.sh CONFIG" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: sbatch [sbatch options] scripts/slurm_train.sh CONFIG [train.py arguments...]" >&2; exit 2; }
: "${SLURM_JOB_ID:?run under Slurm: sbatch scripts/slurm_train.sh CONFIG}"
config=$1
shift
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-$((10000 + SLURM_JOB_ID % 20000))}  # below Linux's ephemeral ports (32768 on)
PROGRAM=${PROGRAM:-train.py}
export MASTER_ADDR MASTER_PORT PROGRAM
echo "job $SLURM_JOB_ID (run ${SLURM_RESTART_COUNT:-0}): $SLURM_JOB_NUM_NODES node(s), rendezvous $MASTER_ADDR:$MASTER_PORT"
srun_options=(--ntasks-per-node=1 --kill-on-bad-exit=1)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then srun_options+=(--cpus-per-task="$SLURM_CPUS_PER_TASK"); fi
# The workers (train.py) stop at a step with a checkpoint on USR1 and TERM. torchrun's agent would die of USR1
# and take the job step down with it. A torchrun that has --signals-to-handle (recent PyTorch; given here as
# PET_SIGNALS_TO_HANDLE) forwards it to its workers, which it starts in sessions of their own that Slurm's
# proctrack/pgid never signals, and waits up to PET_SHUTDOWN_TIMEOUT seconds for them to end; an older one
# ignores it (the trap), and its workers get it from Slurm itself (proctrack/cgroup, the usual setting).
export PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 PET_SHUTDOWN_TIMEOUT=${PET_SHUTDOWN_TIMEOUT:-300}
# shellcheck disable=SC2016  # expanded on each node
srun "${srun_options[@]}" bash -c '
    source scripts/launch_common.sh
    processes=$(nproc_per_node)
    threads_for "$((SLURM_JOB_NUM_NODES * processes))"
    trap "" USR1
    exec torchrun --nnodes="$SLURM_JOB_NUM_NODES" --node_rank="$SLURM_NODEID" --nproc_per_node="$processes" \
        --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" "$PROGRAM" "$@"' \
    bash --config "$config" --log_time "$SLURM_JOB_ID" --set resume=auto "$@"
