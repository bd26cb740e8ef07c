#!/usr/bin/env bash
# Holds the OpenAPI document to the server: starts lct on a free port with an empty data
# directory and no rate limits, and runs schemathesis over every operation of
# /swagger/v1/swagger.json with every check, the stateful phase following the document's links.
# Any failure fails the script. Prints "schemathesis: N passed, M failed" (one test per
# operation, plus the stateful run) for the closing line of scripts/test.sh.
#
# schemathesis and its dependencies are pinned in scripts/schemathesis/requirements.txt and
# installed once into .cache/schemathesis-venv (gitignored).
#
# Environment:
#   LCT_BIN                   the lct binary (default target/debug/lct, built when missing)
#   SCHEMATHESIS_MAX_EXAMPLES test cases per operation and phase (default 40)
#   SCHEMATHESIS_SEED         generation seed (default a fixed one; "random" for a new one)
#   SCHEMATHESIS_ARGS         more arguments for `schemathesis run`
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

venv="$root/.cache/schemathesis-venv"
requirements="$root/scripts/schemathesis/requirements.txt"
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  echo "== installing schemathesis into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --requirement "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

if [ -z "${LCT_BIN:-}" ]; then
  cargo build --bin lct
  LCT_BIN="$root/target/debug/lct"
fi

work="$(mktemp -d)"
lct_pid=""
cleanup() {
  if [ -n "$lct_pid" ] && kill -0 "$lct_pid" 2>/dev/null; then
    kill -TERM "$lct_pid" 2>/dev/null || true
    wait "$lct_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

LCT_LISTEN=127.0.0.1:0 LCT_DATA_DIR="$work/data" LCT_LOG=info \
  LCT_RATE_LIMIT_COMMANDS=0 LCT_RATE_LIMIT_CONNECTIONS=0 \
  "$LCT_BIN" >"$work/lct.log" 2>&1 &
lct_pid=$!

# The bound address is in the "listening" log line.
addr=""
for _ in $(seq 300); do
  addr="$(python3 - "$work/lct.log" <<'PY'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if entry.get("message") == "listening":
        print(entry["addr"])
        break
PY
)"
  [ -n "$addr" ] && break
  if ! kill -0 "$lct_pid" 2>/dev/null; then
    echo "lct exited before listening:" >&2
    cat "$work/lct.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "lct did not report its address within 30 s" >&2
  exit 1
fi

seed="${SCHEMATHESIS_SEED:-20261201}"
seed_args=(--seed "$seed")
[ "$seed" = random ] && seed_args=()

# Run from the scratch directory: schemathesis and Hypothesis keep caches in the working directory.
status=0
(
  cd "$work"
  # shellcheck disable=SC2086 # SCHEMATHESIS_ARGS is a list of arguments
  SCHEMATHESIS_HOOKS="$root/scripts/schemathesis/hooks.py" "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis/schemathesis.toml" run \
    "http://$addr/swagger/v1/swagger.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
    --generation-database none \
    --workers 1 \
    --no-color \
    --report junit --report-junit-path "$work/junit.xml" \
    "${seed_args[@]}" ${SCHEMATHESIS_ARGS:-}
) || status=$?

python3 - "$work/junit.xml" "$status" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    suite = ET.parse(sys.argv[1]).getroot()
    tests = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
except (OSError, ET.ParseError):
    tests, failed = 0, 0
if failed == 0 and int(sys.argv[2]) != 0:
    failed = 1  # schemathesis failed without a report (e.g. the document did not load)
print(f"schemathesis: {tests - failed} passed, {failed} failed")
PY
if ! kill -0 "$lct_pid" 2>/dev/null; then
  lct_status=0
  wait "$lct_pid" || lct_status=$?
  echo "lct exited during the run (status $lct_status)"
  lct_pid=""
  status=1
fi
if [ "$status" != 0 ]; then
  echo "lct errors (last 20):"
  grep -v '"log.level":"\(info\|warn\)"' "$work/lct.log" | tail -n 20 || true
fi
exit "$status"
