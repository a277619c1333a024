#!/usr/bin/env bash
# Train on several machines: run on every node with its own NODE_RANK.
#   MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 NNODES=2 bash scripts/run_train_multinodes.sh CONFIG NODE_RANK [args]
# GPUs per node: all visible ones, or NPROC_PER_NODE. One thread per process unless OMP_NUM_THREADS is set.
# Checkpoints are written on node 0; resume=/pretrain= files, the config, lists and videos must be at the
# same paths on every node (shared storage or copies): see docs/training.md, 'Several nodes'.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
[ $# -ge 2 ] || { echo "usage: MASTER_ADDR=... NNODES=... $0 CONFIG NODE_RANK [train.py arguments...]" >&2; exit 2; }
: "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"
: "${NNODES:?set NNODES to the number of nodes}"
config=$1; node_rank=$2; shift 2
processes=$(nproc_per_node)
threads_for "$((NNODES * processes))"  # the same threads per process as one node running all the processes
exec torchrun --nnodes="$NNODES" --node_rank="$node_rank" --nproc_per_node="$processes" \
    --master_addr="$MASTER_ADDR" --master_port="${MASTER_PORT:-29500}" train.py --config "$config" "$@"
