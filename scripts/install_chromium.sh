#!/usr/bin/env bash
# Installs Debian's Chromium for the app's browser test when it is missing. Exit status 0 when
# /usr/bin/chromium (or `chromium` on PATH) is there afterwards, 1 when it is missing and cannot be installed.
set -uo pipefail
command -v chromium >/dev/null && exit 0
command -v apt-get >/dev/null || { echo "no apt-get here: install Chromium to run the browser test"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "not root: run sudo apt-get install chromium"; exit 1; }
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
