#!/usr/bin/env bash
# Generate attributes for a list: bash scripts/generate_attributes.sh CONFIG --split train|val [--weights CKPT]
#     [--lexicon classes|FILE ...] [--topk 5] [--output FILE] [key=value overrides]
# One process per GPU; running it again after an interruption continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/launch_common.sh
[ $# -ge 1 ] || { echo "usage: $0 CONFIG [tools/generate_attributes.py arguments...]" >&2; exit 2; }
config=$1; shift
launch_local tools/generate_attributes.py --config "$config" "$@"
