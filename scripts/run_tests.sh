#!/usr/bin/env bash
# Installs the test requirements and OpenAI's reference CLIP package, then runs the test suite on one
# pytest-xdist worker per core (a test file stays on one worker, so its module fixtures start once) and prints
# the 15 slowest tests; extra arguments go to pytest (`-n 0`: in one process, as a plain `python -m pytest`).
#   bash scripts/run_tests.sh           the whole suite (what CI and the README run)
#   bash scripts/run_tests.sh --fast    the fast tier: no subprocess, torchrun, browser or multi-epoch training
#                                       (the tests not marked `slow`), for the edit-test loop
# Every test has a time limit (pytest.ini: pytest-timeout), so a hang fails the test it is in, with a stack dump.
# OpenAI's package (the equivalence tests' reference) goes into .cache/openai-clip-reference or
# $BIKE_OPENAI_REFERENCE, never site-packages, as its package is also `clip` (tests/openai_reference.py).
# The real sample videos some tests decode are fetched into .cache/real_videos (scripts/fetch_test_videos.sh);
# where they cannot be, the test summary names those tests as not run.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=()
arguments=()
for argument in "$@"; do
  if [[ "$argument" == "--fast" ]]; then
    tier=(-m "not slow")
  else
    arguments+=("$argument")
  fi
done
python -m pip install -q -r requirements-dev.txt
python -m tests.openai_reference
bash scripts/fetch_test_videos.sh || true  # it says why it could not
python -m pytest -n "$(nproc)" --dist loadfile --durations=15 ${tier[@]+"${tier[@]}"} ${arguments[@]+"${arguments[@]}"}
