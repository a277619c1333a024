#!/usr/bin/env bash
# Co-train the video and attributes branches: bash scripts/run_co_train.sh CONFIG [train_co.py arguments and key=value overrides]
# The config names the attribute files (data.attributes_train_path, data.attributes_val_path); make them
# first with scripts/generate_attributes.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
launch_with config train_co.py "$@"
