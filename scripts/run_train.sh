#!/usr/bin/env bash
# Train on this machine: bash scripts/run_train.sh CONFIG [train.py options and key=value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
launch_with config train.py "$@"
