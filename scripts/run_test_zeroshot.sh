#!/usr/bin/env bash
# Zero-shot evaluation (full-class and half-class protocols):
#   bash scripts/run_test_zeroshot.sh CONFIG WEIGHTS [test_zeroshot.py arguments...]
# Several label/list splits in one run: add --config for each further split, e.g. Kinetics-600:
#   bash scripts/run_test_zeroshot.sh configs/k600/k600_zero_shot_split1.yaml WEIGHTS \
#        --config configs/k600/k600_zero_shot_split2.yaml --config configs/k600/k600_zero_shot_split3.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
launch_with "config weights" test_zeroshot.py "$@"
