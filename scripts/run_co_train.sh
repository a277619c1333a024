#!/usr/bin/env bash
# The video branch, then the attributes branch, as the original's script does:
#   bash scripts/run_co_train.sh CONFIG [train.py options and key=value overrides, given to both]
# train.py writes <output_path>/.../<start time>_video, train_co.py (the attributes branch, the original's
# train_attributes.py recipe) <start time>_attributes; test.py fuses them (--weights, --attributes_weights).
# The config names the attribute files (data.attributes_train_path, data.attributes_val_path); make them
# first with scripts/generate_attributes.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
if [ $# -lt 1 ]; then
    echo "usage: $(basename "$0") CONFIG [train.py options and key=value overrides]" >&2
    exit 2
fi
config=$1
shift
now=$(date +%Y%m%d_%H%M%S)
torchrun --standalone --nproc_per_node="$(nproc_per_node)" train.py --config "$config" --log_time "${now}_video" "$@"
torchrun --standalone --nproc_per_node="$(nproc_per_node)" train_co.py --config "$config" \
    --log_time "${now}_attributes" "$@"
