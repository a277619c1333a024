#!/usr/bin/env bash
# Generate attributes for a list: bash scripts/generate_attributes.sh CONFIG --split train|val [--weights CKPT]
#     [--lexicon classes|FILE ...] [--topk 5] [--output FILE] [key=value overrides]
# One process per GPU; running it again after an interruption continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
launch_with config tools/generate_attributes.py "$@"
