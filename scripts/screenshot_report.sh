#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium and saves a PNG, to check by eye that
# the report looks right. Installs Debian's chromium when missing.
#   scripts/screenshot_report.sh RUN_DIR [OUT.png]   (default OUT: RUN_DIR/report.png)
# With no RUN_DIR, it reports the sample run of Tests/Fixtures/metrics/sample-run in a
# temporary directory (needs a built skesl: swift build, release or debug).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if ! command -v chromium >/dev/null 2>&1; then
  echo "screenshot_report: installing chromium" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ $# -ge 1 ]; then
  RUN_DIR=$(cd "$1" && pwd)
else
  RUN_DIR=$(mktemp -d /tmp/skesl-report-demo.XXXXXX)
  cp Tests/Fixtures/metrics/sample-run/metrics.jsonl "$RUN_DIR/"
fi
OUT=${2:-$RUN_DIR/report.png}
case "$OUT" in /*) ;; *) OUT=$ROOT/$OUT ;; esac

# The release build (scripts/demo makes one), else the debug build.
if [ -z "${SKESL:-}" ]; then
  SKESL=$(swift build -c release --show-bin-path)/skesl
  [ -x "$SKESL" ] || SKESL=$(swift build --show-bin-path)/skesl
fi
[ -x "$SKESL" ] || { echo "screenshot_report: no skesl binary: run swift build (or scripts/demo), or set SKESL" >&2; exit 1; }
"$SKESL" report --quiet "$RUN_DIR" >/dev/null

# A throwaway profile keeps the run from touching (or being slowed by) a user profile.
PROFILE=$(mktemp -d /tmp/skesl-chromium.XXXXXX)
trap 'rm -rf "$PROFILE"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$PROFILE" \
  --window-size="${WINDOW_SIZE:-1200,2000}" --screenshot="$OUT" "file://$RUN_DIR/report.html" 2>/dev/null
echo "$OUT"
