#!/usr/bin/env bash
# Installs the FFmpeg shared libraries that TorchCodec loads (FFmpeg 4 to 8: libavcodec 58 to 62) from the
# Debian/Ubuntu archive when none are found. Exit status 0 when they are present afterwards, 1 when they are
# missing and cannot be installed here (no apt, not root, no such packages).
set -uo pipefail
present() { ldconfig -p | grep -Eq 'libavcodec\.so\.(5[89]|6[0-2])\b'; }
present && exit 0
command -v apt-get >/dev/null || { echo "no apt-get here: install FFmpeg (4 to 8) with its shared libraries"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "not root: run sudo apt-get install ffmpeg"; exit 1; }
pattern='^libav(codec|format|util|device|filter)[0-9]+$|^libsw(scale|resample)[0-9]+$'
[ -n "$(apt-cache search --names-only "$pattern")" ] || apt-get update -qq
# The search also lists packages that provide a matching name (libavcodec-extra59 provides libavcodec59, and
# conflicts with it): keep the names that match themselves.
packages=$(apt-cache search --names-only "$pattern" | awk '{print $1}' | grep -E "$pattern")
[ -n "$packages" ] || { echo "apt offers no FFmpeg library packages"; exit 1; }
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
present
