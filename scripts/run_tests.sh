#!/usr/bin/env bash
# Installs the test requirements and runs the whole test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
# OpenAI's own CLIP package is the independent reference the equivalence tests compare against.
# It installs a top-level package called `clip` too, so it goes to its own folder, never site-packages.
reference_dir="${BIKE_OPENAI_REFERENCE:-.cache/openai-clip-reference}"
if [ ! -f "$reference_dir/clip/model.py" ]; then
    python -m pip install -q --no-deps --target "$reference_dir" "openai-clip==1.0.1"
fi
export BIKE_OPENAI_REFERENCE="$reference_dir"
python -m pytest "$@"
