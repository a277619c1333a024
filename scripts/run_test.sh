#!/usr/bin/env bash
# Evaluate: bash scripts/run_test.sh CONFIG WEIGHTS [--test_crops 3 --test_clips 4 --save_scores s.pt ...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
[ $# -ge 2 ] || { echo "usage: $0 CONFIG WEIGHTS [test.py arguments...]" >&2; exit 2; }
config=$1; weights=$2; shift 2
launch_local test.py --config "$config" --weights "$weights" "$@"
