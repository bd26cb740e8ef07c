#!/usr/bin/env bash
# Runs the hub tests with the official @microsoft/signalr client against target/debug/lct
# (or the binary named by LCT_BIN).
set -euo pipefail
cd "$(dirname "$0")"

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
