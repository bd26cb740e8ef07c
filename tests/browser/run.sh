#!/usr/bin/env bash
# Runs the browser test of the web client: Debian's chromium driven by playwright-core against
# target/debug/lct (or the binary named by LCT_BIN). Screenshots go to tests/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "chromium is missing: apt-get install -y chromium" >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi

if [ -z "${LCT_BIN:-}" ]; then
  (cd ../.. && cargo build --bin lct)
fi

# Readable per-test output on stdout, and a TAP copy whose summary closes the run.
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
status=0
node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  *.test.mjs || status=$?
echo
grep -E '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$tap" || true
exit "$status"
