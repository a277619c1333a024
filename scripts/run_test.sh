#!/usr/bin/env bash
# Evaluate: bash scripts/run_test.sh CONFIG WEIGHTS [--test_crops 3 --test_clips 4 --save_scores s.pt ...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
launch_with "config weights" test.py "$@"
