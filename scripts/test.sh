#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (unit, router, end-to-end against the real
# binary with its own redis-server instances), the JavaScript client tests and the static
# validation of the deployment files.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need redis-server && [ "$(id -u)" = 0 ] && need apt-get; then
  echo "== installing redis-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

echo "== deployment files (static validation)"
bash scripts/validate-deploy.sh

echo "== cargo test (workspace)"
cargo test --workspace --no-fail-fast
