#!/usr/bin/env bash
# Train on this machine: bash scripts/run_train.sh CONFIG [train.py options and key=value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
[ $# -ge 1 ] || { echo "usage: $0 CONFIG [train.py arguments...]" >&2; exit 2; }
config=$1; shift
launch_local train.py --config "$config" "$@"
