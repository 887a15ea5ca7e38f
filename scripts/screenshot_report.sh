#!/usr/bin/env bash
# Render a privsynth report.html in headless Chromium and save a PNG screenshot, to check that
# the self-contained report displays (no network, no external files).
#   scripts/screenshot_report.sh runs/eval/report.html /tmp/report.png [HEIGHT]
# Needs Debian's chromium (apt-get install -y chromium); not part of CI.
set -euo pipefail
html="$(realpath "$1")"; png="${2:-/tmp/report.png}"; height="${3:-3000}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --screenshot="$png" --window-size=1200,"$height" \
  "file://$html" 2>/dev/null
echo "screenshot: $png"
