#!/usr/bin/env bash
# Train on this machine: bash scripts/run_train.sh CONFIG [train.py options and key=value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
[ $# -ge 1 ] || { echo "usage: $0 CONFIG [train.py arguments...]" >&2; exit 2; }
config=$1; shift
exec torchrun --standalone --nproc_per_node="$(nproc_per_node)" train.py --config "$config" "$@"
