#!/usr/bin/env bash
# Installs the test requirements and runs the whole test suite; extra arguments go to pytest.
# (OpenAI's own CLIP package, the equivalence tests' reference, is installed by tests/conftest.py on first use,
# into .cache/openai-clip-reference or $BIKE_OPENAI_REFERENCE: never site-packages, as its package is also `clip`.)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m pytest "$@"
