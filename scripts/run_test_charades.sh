#!/usr/bin/env bash
# Evaluate on Charades (multi-label, printed as `Overall mAP X%`):
#   bash scripts/run_test_charades.sh CONFIG WEIGHTS [--test_crops 3 --test_clips 4 --save_scores s.pt ...]
# test.py reads Charades' multi-label CSVs itself, so this is run_test.sh under the name the original uses.
exec bash "$(dirname "$0")/run_test.sh" "$@"
