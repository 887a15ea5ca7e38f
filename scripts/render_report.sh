#!/usr/bin/env bash
# Render a privsynth report.html in headless Chromium and save a screenshot, to check by eye that
# the self-contained report (base64 PNGs, inline CSS) displays with no network. Not a CI test.
#
#   scripts/render_report.sh runs/eval/report.html /tmp/report.png [WIDTHxHEIGHT]
#
# Needs Debian's chromium (apt-get update && apt-get install -y chromium). Every network-facing
# feature is switched off, so a report that still needed a remote resource would show it broken.
set -euo pipefail
html=${1:?usage: render_report.sh REPORT.html OUT.png [WIDTHxHEIGHT]}
png=${2:?usage: render_report.sh REPORT.html OUT.png [WIDTHxHEIGHT]}
size=${3:-1200x3000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found: apt-get update && apt-get install -y chromium" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --screenshot="$(realpath -m "$png")" \
  --window-size="${size/x/,}" "file://$(realpath "$html")" 2>/dev/null
test -s "$png" && echo "wrote $png"
