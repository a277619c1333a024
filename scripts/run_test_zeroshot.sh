#!/usr/bin/env bash
# Zero-shot evaluation, by default the original's published protocol (full classes and ten half-class splits):
#   bash scripts/run_test_zeroshot.sh CONFIG WEIGHTS [test_zeroshot.py arguments...]
# Several label/list splits in one run: add --config for each further split, e.g. Kinetics-600, whose
# published split figures are the model's video-level scores (--scoring video; see docs/model_zoo.md):
#   bash scripts/run_test_zeroshot.sh configs/k600/k600_zero_shot_split1.yaml WEIGHTS --scoring video \
#        --config configs/k600/k600_zero_shot_split2.yaml --config configs/k600/k600_zero_shot_split3.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
launch_with "config weights" test_zeroshot.py "$@"
