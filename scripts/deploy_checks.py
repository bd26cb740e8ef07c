#!/usr/bin/env python3
"""Consistency checks of the deployment artefacts, run by scripts/validate-deploy.sh.

The schema-level validation is done by the real tools (docker compose, kubernetes-validate,
hadolint, promtool, crossplane); this file checks what those tools cannot know: that the
pieces agree with each other and with lct's contract (ports, endpoints, metric names,
shutdown timing, WebSocket proxying).

Usage: deploy_checks.py SUBCOMMAND [ARGS...]   (each subcommand exits 1 on any problem)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent

LCT_MONGODB_URI = "mongodb://mongo1:27017,mongo2:27017,mongo3:27017/?replicaSet=rs0"
LCT_SERVICES = ("lct1", "lct2")
# The Pods metric the HorizontalPodAutoscaler scales on (through prometheus-adapter).
HPA_CONNECTIONS_METRIC = "lct_ws_connections"
REQUIRED_COMPOSE_SERVICES = {
    "mongo1", "mongo2", "mongo3", "mongo-init", "redis", "elasticsearch", "kibana",
    "kibana-setup", "apm-server", "prometheus", "grafana", "lct1", "lct2", "nginx",
}
DASHBOARD_METRICS = (
    "lct_http_request_duration_seconds_bucket",
    "lct_ws_connections",
    "lct_messages_delivered_total",
    "lct_messages_dropped_total",
    "lct_slow_consumer_disconnects_total",
    "lct_redis_connected",
    "lct_event_store_append_duration_seconds_bucket",
    "lct_version_conflicts_total",
)


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok

    def finish(self, what: str) -> int:
        if self.items:
            for item in self.items:
                print(f"  - {item}")
            print(f"{what}: {len(self.items)} problem(s)")
            return 1
        print(f"{what}: ok")
        return 0


def seconds(value: str | int | float) -> float:
    """Parse compose durations such as '30s', '1m30s' or plain numbers."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|s|m|h)", value):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def listen_port(address: str | None) -> int | None:
    """The port of a listen address such as 0.0.0.0:9090 or [::]:9090."""
    match = re.fullmatch(r".*:(\d+)", str(address or "").strip())
    return int(match.group(1)) if match else None


# lct's default of LCT_MAX_CONNECTIONS (src/settings.rs); file descriptors a pod needs besides its
# connections (store, Redis, telemetry, logs).
DEFAULT_MAX_CONNECTIONS = 10_000
FD_HEADROOM = 1024


def nofile(svc: dict) -> tuple[int, int]:
    """The (soft, hard) open-file limit compose gives a service; (0, 0) when unset."""
    limit = (svc.get("ulimits") or {}).get("nofile")
    if isinstance(limit, dict):
        return int(limit.get("soft", 0)), int(limit.get("hard", 0))
    return (int(limit), int(limit)) if limit else (0, 0)


def nginx_directive(conf: str, name: str) -> int | None:
    match = re.search(rf"^\s*{name}\s+(\d+)\s*;", conf, re.M)
    return int(match.group(1)) if match else None


# Redis: a bound on its memory below the container's limit (room for the AOF rewrite's fork and
# the allocator), evicting only keys that expire: lct's keys without a TTL (the pod registry,
# lct:secret:token-key) must never be evicted.
REDIS_MAXMEMORY_SHARE = 0.8
REDIS_POLICY = "volatile-ttl"
REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
K8S_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def redis_bytes(value: str) -> int | None:
    match = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(value).strip())
    if not match or match.group(2).lower() not in REDIS_UNITS:
        return None
    return int(match.group(1)) * REDIS_UNITS[match.group(2).lower()]


def k8s_bytes(value: str | int | None) -> int | None:
    match = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(value or "").strip())
    if not match or match.group(2) not in K8S_UNITS:
        return None
    return int(match.group(1)) * K8S_UNITS[match.group(2)]


def redis_memory_settings(command: str, env: dict[str, str]) -> tuple[str | None, str | None]:
    """(maxmemory, maxmemory-policy) of a redis-server command line, or of redis-sentinel.sh's
    server role (its REDIS_MAXMEMORY default, or the value the environment gives)."""
    if "redis-sentinel.sh" in command and command.rstrip().endswith("server"):
        script = (ROOT / "deploy/redis/redis-sentinel.sh").read_text()
        default = re.search(r"\$\{REDIS_MAXMEMORY:-([^}]+)\}", script)
        policy = re.search(r"--maxmemory-policy\s+(\S+)", script)
        return env.get("REDIS_MAXMEMORY", default.group(1) if default else None), policy.group(1) if policy else None
    maxmemory = re.search(r"--maxmemory\s+(\S+)", command)
    policy = re.search(r"--maxmemory-policy\s+(\S+)", command)
    return (maxmemory.group(1) if maxmemory else None), (policy.group(1) if policy else None)


def check_redis_memory(p: Problems, name: str, command: str, env: dict[str, str], limit: int | None) -> None:
    maxmemory, policy = redis_memory_settings(command, env)
    size = redis_bytes(maxmemory) if maxmemory else None
    p.check(size is not None and size > 0, f"{name}: redis-server needs --maxmemory")
    p.check(policy == REDIS_POLICY,
            f"{name}: --maxmemory-policy must be {REDIS_POLICY} (only keys with a TTL may be evicted), got {policy}")
    if limit is not None and size is not None:
        p.check(size <= REDIS_MAXMEMORY_SHARE * limit,
                f"{name}: --maxmemory {maxmemory} must stay below {REDIS_MAXMEMORY_SHARE:.0%} of the memory limit ({limit} bytes)")


def lct_setting_default(env_name: str) -> str | None:
    """The default of one of lct's settings, as src/settings.rs declares it."""
    match = re.search(rf'env = "{env_name}", default_value_t = ([\d_.]+)', (ROOT / "src/settings.rs").read_text())
    return match.group(1).replace("_", "") if match else None


def lct_idle_seconds(env: dict) -> float:
    """How long lct keeps an idle kept-alive connection (LCT_HEADER_READ_TIMEOUT_MS)."""
    return float(env.get("LCT_HEADER_READ_TIMEOUT_MS") or lct_setting_default("LCT_HEADER_READ_TIMEOUT_MS")) / 1000


# After SIGTERM lct drains for LCT_SHUTDOWN_GRACE, then sends the queued logs and spans, at most
# 5 s each (README, "Shutdown"); a stop budget covers that, and a margin on top.
TELEMETRY_FLUSH_SECONDS = 2 * 5
SHUTDOWN_MARGIN_SECONDS = 5


# A proxy in front buffers a request body up to its own limit; lct refuses bodies over
# MAX_BODY_BYTES (api/src/lib.rs) with its error body. The proxy's limit lets those through to
# lct, and no more than a few times that.
PROXY_BODY_LIMIT_MAX = 64 * 1024


def lct_max_body_bytes() -> int | None:
    match = re.search(r"pub const MAX_BODY_BYTES: usize = (\d+)(?: \* (\d+))?;", (ROOT / "api/src/lib.rs").read_text())
    return int(match.group(1)) * int(match.group(2) or 1) if match else None


def nginx_size(value: str | None) -> int | None:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", str(value or "").strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]


def check_body_limit(p: Problems, what: str, value: str | None) -> None:
    size, lct = nginx_size(value), lct_max_body_bytes()
    p.check(size is not None and lct is not None and lct <= size <= PROXY_BODY_LIMIT_MAX,
            f"{what}: body size limit {value} must lie between lct's own ({lct} bytes) and {PROXY_BODY_LIMIT_MAX // 1024}k")


def measured_pod_memory(connections: int) -> tuple[float, float, float]:
    """(bytes before any client, bytes per idle connection, working set at `connections`) of one
    pod, from the fan-out run docs/scaling.md reports (two pods; the higher of its two systems)."""
    run = json.loads((ROOT / "docs/benchmarks/fanout-cluster.json").read_text())
    systems = [s for s in run["systems"] if s["system"].startswith("lct")]
    baseline = max(s["idle_rss_before_bytes"] for s in systems) / 2
    per_connection = max(s["memory_per_idle_connection_bytes"] for s in systems)
    return baseline, per_connection, baseline + connections * per_connection


# lct's second listener (LCT_ADMIN_LISTEN): probes and scrapes only, outside the connection caps.
ADMIN_PATHS = ("/liveness", "/readiness", "/metrics", "/cluster")


# --- docker-compose.yml -----------------------------------------------------------------------

def nginx_upstream_servers(conf: str) -> list[str]:
    block = re.search(r"upstream\s+lct\s*\{(.*?)\}", conf, re.S)
    if not block:
        return []
    return re.findall(r"^\s*server\s+([^\s;]+)", block.group(1), re.M)


def prometheus_lct_targets(prom: dict) -> list[str]:
    for job in prom.get("scrape_configs", []):
        if job.get("job_name") == "lct":
            return [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    return []


def check_compose(config_json: str, env_file: str) -> int:
    p = Problems()
    config = json.loads(Path(config_json).read_text())
    env = dict(
        line.split("=", 1)
        for line in Path(env_file).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" in line
    )
    services = config.get("services", {})
    missing = REQUIRED_COMPOSE_SERVICES - set(services)
    p.check(not missing, f"services missing from docker-compose.yml: {sorted(missing)}")

    for name in ("mongo1", "mongo2", "mongo3"):
        svc = services.get(name, {})
        cmd = svc.get("command") or []
        p.check(svc.get("image", "").startswith("mongo:7"), f"{name}: image should be mongo:7")
        p.check("--replSet" in cmd and cmd[cmd.index("--replSet") + 1] == "rs0",
                f"{name}: command must contain --replSet rs0")
        p.check("healthcheck" in svc, f"{name}: needs a healthcheck")

    init = services.get("mongo-init", {})
    p.check(init.get("restart") in ("no", None), "mongo-init: must be one-shot (restart: no)")
    init_cmd = " ".join(init.get("entrypoint") or []) + " " + " ".join(init.get("command") or [])
    p.check("init-replica-set.js" in init_cmd, "mongo-init: must run init-replica-set.js")

    redis = services.get("redis", {})
    p.check("--requirepass" in " ".join(redis.get("command") or []), "redis: must require a password")
    check_compose_redis_memory(p, services)

    for name in LCT_SERVICES:
        svc = services.get(name, {})
        e = svc.get("environment", {}) or {}
        p.check("build" in svc, f"{name}: must build from the Dockerfile")
        p.check(e.get("LCT_MONGODB_URI") == LCT_MONGODB_URI,
                f"{name}: LCT_MONGODB_URI should be {LCT_MONGODB_URI}")
        redis_url = urlparse(e.get("LCT_REDIS_URL", ""))
        p.check(redis_url.scheme == "redis" and redis_url.hostname == "redis"
                and redis_url.password == env.get("REDIS_PASSWORD"),
                f"{name}: LCT_REDIS_URL must point at redis with REDIS_PASSWORD from the env file")
        p.check(e.get("LCT_ELASTICSEARCH_URL") == "http://elasticsearch:9200",
                f"{name}: LCT_ELASTICSEARCH_URL should be http://elasticsearch:9200")
        p.check(e.get("LCT_APM_SERVER_URL") == "http://apm-server:8200",
                f"{name}: LCT_APM_SERVER_URL should be http://apm-server:8200")
        p.check(e.get("LCT_PUBLIC_URL") == "http://localhost:8080",
                f"{name}: LCT_PUBLIC_URL should be http://localhost:8080")
        p.check(e.get("LCT_POD_NAME") == name, f"{name}: LCT_POD_NAME should be {name}")
        # Replicas behind one balancer: one token key, and the client address nginx appended.
        secret = e.get("LCT_TOKEN_SECRET", "")
        p.check(secret == env.get("LCT_TOKEN_SECRET") and len(secret) >= 16,
                f"{name}: LCT_TOKEN_SECRET must be the env file's LCT_TOKEN_SECRET (at least 16 characters)")
        p.check(e.get("LCT_CLIENT_IP_HEADER", "").lower() == "x-forwarded-for",
                f"{name}: LCT_CLIENT_IP_HEADER must be x-forwarded-for (nginx appends the client address)")
        p.check(str(e.get("LCT_TRUSTED_PROXY_HOPS")) == "1",
                f"{name}: LCT_TRUSTED_PROXY_HOPS must be 1 (nginx is the one proxy in front)")
        p.check(e.get("LCT_V1", "open") in ("open", "read-only", "off"), f"{name}: LCT_V1 must be open, read-only or off")
        grace = float(e.get("LCT_SHUTDOWN_GRACE", 20))
        budget = grace + TELEMETRY_FLUSH_SECONDS + SHUTDOWN_MARGIN_SECONDS
        p.check(seconds(svc.get("stop_grace_period", "10s")) > budget,
                f"{name}: stop_grace_period must exceed LCT_SHUTDOWN_GRACE ({grace:g}s) + the telemetry flushes "
                f"({TELEMETRY_FLUSH_SECONDS}s) + {SHUTDOWN_MARGIN_SECONDS}s, i.e. {budget:g}s")
        p.check(not svc.get("ports"), f"{name}: must not publish ports (only through nginx)")
        # The same confinement as the Kubernetes pod: read-only root, no capabilities, no setuid.
        p.check(svc.get("read_only") is True and any(str(t).split(":")[0] == "/tmp" for t in svc.get("tmpfs") or []),
                f"{name}: needs read_only: true with a tmpfs at /tmp")
        p.check("ALL" in (svc.get("cap_drop") or []), f"{name}: cap_drop must be [ALL]")
        p.check("no-new-privileges:true" in (svc.get("security_opt") or []),
                f"{name}: security_opt must contain no-new-privileges:true")
        # Every connection is a file descriptor: Docker's default soft limit (1024 on many hosts)
        # would refuse connections far below LCT_MAX_CONNECTIONS.
        max_connections = int(e.get("LCT_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS))
        soft, hard = nofile(svc)
        p.check(soft >= max_connections + FD_HEADROOM and hard >= soft,
                f"{name}: ulimits nofile ({soft}/{hard}) must exceed LCT_MAX_CONNECTIONS ({max_connections}) by {FD_HEADROOM}")
        # Health checks and scrapes go to the admin listener, which no connection cap can refuse.
        admin = listen_port(e.get("LCT_ADMIN_LISTEN"))
        p.check(admin is not None and admin != listen_port(e.get("LCT_LISTEN")),
                f"{name}: LCT_ADMIN_LISTEN must set an admin listener on a port of its own")
        test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
        p.check(admin is not None and re.search(rf"//127\.0\.0\.1:{admin}/liveness\b", test) is not None,
                f"{name}: the healthcheck must GET /liveness on the admin port ({admin}), not through the capped listener")

    nginx = services.get("nginx", {})
    published = {str(port.get("published")) for port in nginx.get("ports", [])}
    p.check("8080" in published, "nginx: must publish host port 8080")
    # A proxied client holds two of a worker's connections (client and upstream): one worker must
    # carry a whole replica's LCT_MAX_CONNECTIONS, within the open-file limit compose gives it.
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    worker_connections = nginx_directive(conf, "worker_connections") or 512
    rlimit = nginx_directive(conf, "worker_rlimit_nofile")
    replica_max = max(int((services.get(s, {}).get("environment") or {}).get("LCT_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS))
                      for s in LCT_SERVICES)
    p.check(worker_connections >= 2 * replica_max,
            f"nginx: worker_connections ({worker_connections}) must hold 2 x LCT_MAX_CONNECTIONS ({replica_max})")
    p.check(rlimit is not None and rlimit >= worker_connections + FD_HEADROOM,
            f"nginx: worker_rlimit_nofile ({rlimit}) must exceed worker_connections ({worker_connections}) by {FD_HEADROOM}")
    soft, hard = nofile(nginx)
    p.check(rlimit is not None and soft >= rlimit and hard >= soft,
            f"nginx: ulimits nofile ({soft}/{hard}) must allow worker_rlimit_nofile ({rlimit})")

    # Every bind-mounted file or directory must exist in the repository.
    for name, svc in services.items():
        for vol in svc.get("volumes", []) or []:
            if vol.get("type") == "bind":
                p.check(Path(vol["source"]).exists(), f"{name}: bind mount source {vol['source']} does not exist")

    upstream = nginx_upstream_servers((ROOT / "deploy/nginx/nginx.conf").read_text())
    p.check(sorted(upstream) == sorted(f"{s}:8080" for s in LCT_SERVICES),
            f"nginx upstream servers {upstream} must be exactly the lct services on port 8080")

    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = prometheus_lct_targets(prom)
    admin_ports = {listen_port((services.get(s, {}).get("environment") or {}).get("LCT_ADMIN_LISTEN")) for s in LCT_SERVICES}
    admin = next(iter(admin_ports)) if len(admin_ports) == 1 else None
    p.check(sorted(targets) == sorted(f"{s}:{admin}" for s in LCT_SERVICES),
            f"prometheus job lct targets {targets} must be exactly the lct services on the admin port ({admin})")

    deploy_js = (ROOT / "deploy/mongo/init-replica-set.js").read_bytes()
    k8s_js = (ROOT / "k8s/mongodb/init-replica-set.js").read_bytes()
    p.check(deploy_js == k8s_js,
            "deploy/mongo/init-replica-set.js and k8s/mongodb/init-replica-set.js differ")
    return p.finish("compose consistency")


def check_compose_redis_memory(p: Problems, services: dict) -> None:
    """Every Redis server of the compose topology (one, or the Sentinel members) bounds its memory."""
    for name, svc in services.items():
        command = " ".join(svc.get("command") or [])
        if "redis-server" in command or command.endswith("redis-sentinel.sh server"):
            limit = svc.get("mem_limit") or ((svc.get("deploy") or {}).get("resources") or {}).get("limits", {}).get("memory")
            check_redis_memory(p, name, command, svc.get("environment") or {}, int(limit) if limit else None)


# --- nginx ------------------------------------------------------------------------------------

def check_nginx(crossplane_json: str) -> int:
    p = Problems()
    parsed = json.loads(Path(crossplane_json).read_text())
    p.check(parsed.get("status") == "ok", f"crossplane: {parsed.get('errors')}")

    def walk(block, path=()):
        for d in block:
            yield path, d
            yield from walk(d.get("block", []), path + (d["directive"],))

    directives = list(walk(parsed["config"][0]["parsed"])) if parsed.get("config") else []
    from crossplane.analyzer import DIRECTIVES  # the directives nginx itself knows

    for path, d in directives:
        if not path or path[-1] not in ("map", "types", "geo", "split_clients", "charset_map"):
            p.check(d["directive"] in DIRECTIVES, f"nginx: unknown directive {d['directive']} (line {d.get('line')})")
    loc = [d for path, d in directives
           if d["directive"] == "location" and path[-1:] == ("server",) and d["args"] == ["/"]]
    p.check(len(loc) == 1, "nginx: expected one 'location /' block")
    inner = {}
    for d in (loc[0].get("block", []) if loc else []):
        inner.setdefault(d["directive"], []).append(d["args"])
    headers = {a[0].lower(): a[1] for a in inner.get("proxy_set_header", [])}
    p.check(["http://lct"] in inner.get("proxy_pass", []), "nginx: location / must proxy_pass http://lct")
    p.check(["1.1"] in inner.get("proxy_http_version", []), "nginx: proxy_http_version 1.1 is required for WebSockets")
    p.check(headers.get("upgrade") == "$http_upgrade", "nginx: must forward the Upgrade header")
    p.check(headers.get("connection") == "$connection_upgrade", "nginx: must set Connection from $connection_upgrade")
    p.check(headers.get("x-forwarded-for") == "$proxy_add_x_forwarded_for",
            "nginx: X-Forwarded-For must append the client address ($proxy_add_x_forwarded_for): lct reads its right-most entry")
    for t in ("proxy_read_timeout", "proxy_send_timeout"):
        values = inner.get(t, [])
        p.check(bool(values) and seconds(values[0][0]) >= 3600, f"nginx: {t} must be at least 3600s")
    # lct closes a kept-alive connection after its idle timeout; nginx must drop its idle upstream
    # connections first (its default is 60 s), or a request it sends on one lct is closing gets 502.
    upstream = next((d for path, d in directives if d["directive"] == "upstream" and d["args"] == ["lct"]), {})
    keepalive = [d["args"][0] for d in upstream.get("block", []) if d["directive"] == "keepalive_timeout"]
    idle = lct_idle_seconds({})
    p.check(bool(keepalive) and seconds(keepalive[0]) < idle,
            f"nginx: upstream lct needs keepalive_timeout below lct's idle timeout ({idle:g}s), got {keepalive or 'the default 60s'}")
    body = [d["args"][0] for path, d in directives if d["directive"] == "client_max_body_size"]
    check_body_limit(p, "nginx: client_max_body_size", body[0] if len(body) == 1 else None)
    names = {d["directive"] for _, d in directives}
    p.check(not names & {"ip_hash", "hash", "sticky", "least_conn", "random"},
            "nginx: upstream must be plain round-robin without sticky sessions")
    p.check(any(d["directive"] == "map" and d["args"] == ["$http_upgrade", "$connection_upgrade"] for _, d in directives),
            "nginx: map $http_upgrade $connection_upgrade is missing")
    return p.finish("nginx consistency")


# --- Grafana ----------------------------------------------------------------------------------

def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append((panel.get("title", "?"), target["expr"]))
    return out


def check_grafana(dashboard_path: str) -> int:
    p = Problems()
    dashboard = json.loads(Path(dashboard_path).read_text())
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/lct.yml").read_text())
    ds_uids = {d["uid"] for d in ds.get("datasources", [])}
    p.check(bool(providers.get("providers")), "grafana: no dashboard provider provisioned")
    p.check(bool(dashboard.get("uid")) and bool(dashboard.get("title")), "grafana: dashboard needs uid and title")
    ids = [panel.get("id") for panel in dashboard.get("panels", [])]
    p.check(len(ids) == len(set(ids)), "grafana: panel ids must be unique")
    for panel in dashboard.get("panels", []):
        p.check({"x", "y", "w", "h"} <= set(panel.get("gridPos", {})), f"grafana: panel {panel.get('title')} lacks gridPos")
        uid = (panel.get("datasource") or {}).get("uid")
        p.check(uid in ds_uids, f"grafana: panel {panel.get('title')} uses unknown datasource uid {uid}")
    exprs = " ".join(e for _, e in dashboard_exprs(dashboard))
    for metric in DASHBOARD_METRICS:
        p.check(metric in exprs, f"grafana: no panel queries {metric}")
    p.check("histogram_quantile(0.50" in exprs and "histogram_quantile(0.99" in exprs,
            "grafana: latency panels need p50 and p99")
    p.check("by (status)" in exprs, "grafana: request rate must be split by status")
    return p.finish("grafana dashboard")


def grafana_rules(dashboard_path: str, out_path: str) -> int:
    """Write the dashboard's PromQL as recording rules so that promtool parses every query."""
    dashboard = json.loads(Path(dashboard_path).read_text())
    rules = []
    for i, (title, expr) in enumerate(dashboard_exprs(dashboard)):
        concrete = expr.replace("$__rate_interval", "5m").replace("$pod", ".*")
        rules.append({"record": f"grafana_panel:{i}", "expr": concrete,
                      "labels": {"panel": title}})
    Path(out_path).write_text(yaml.safe_dump({"groups": [{"name": "grafana-dashboard", "rules": rules}]}))
    print(f"wrote {len(rules)} dashboard queries to {out_path}")
    return 0


# --- Kibana -----------------------------------------------------------------------------------

def check_kibana(ndjson_path: str, template_path: str) -> int:
    p = Problems()
    objects = []
    for n, line in enumerate(Path(ndjson_path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as err:
            p.check(False, f"kibana: line {n} is not JSON: {err}")
    by_key = {(o.get("type"), o.get("id")): o for o in objects}
    p.check(len(by_key) == len(objects), "kibana: duplicate (type, id) pairs")
    for o in objects:
        p.check(bool(o.get("id")) and bool(o.get("type")) and isinstance(o.get("attributes"), dict),
                f"kibana: object without id/type/attributes: {str(o)[:80]}")
        for ref in o.get("references", []):
            p.check((ref.get("type"), ref.get("id")) in by_key,
                    f"kibana: {o.get('type')}/{o.get('id')} references missing {ref.get('type')}/{ref.get('id')}")
        attrs = o.get("attributes", {})
        for key in ("visState", "uiStateJSON", "panelsJSON", "optionsJSON"):
            if key in attrs:
                try:
                    json.loads(attrs[key])
                except (TypeError, json.JSONDecodeError) as err:
                    p.check(False, f"kibana: {o['id']}.{key} is not JSON: {err}")
        meta = attrs.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
        if meta is not None:
            try:
                source = json.loads(meta)
                ref_name = source.get("indexRefName")
                if ref_name:
                    p.check(any(r.get("name") == ref_name for r in o.get("references", [])),
                            f"kibana: {o['id']} indexRefName {ref_name} has no reference")
            except json.JSONDecodeError as err:
                p.check(False, f"kibana: {o['id']} searchSourceJSON is not JSON: {err}")

    views = [o for o in objects if o.get("type") == "index-pattern"]
    p.check(any(v["attributes"].get("title") == "lct-api-*" and v["attributes"].get("timeFieldName") == "@timestamp"
                for v in views), "kibana: data view lct-api-* with time field @timestamp is missing")

    vis_states = [json.loads(o["attributes"]["visState"]) for o in objects
                  if o.get("type") == "visualization" and "visState" in o.get("attributes", {})]
    aggs = [a for v in vis_states for a in v.get("aggs", [])]
    p.check(any(a.get("type") == "terms" and a.get("params", {}).get("field") == "StatusCode" for a in aggs),
            "kibana: no visualization splits requests by StatusCode")
    p.check(any(a.get("type") == "percentiles" and a.get("params", {}).get("field") == "Elapsed" for a in aggs),
            "kibana: no visualization of Elapsed percentiles")

    searches = [o for o in objects if o.get("type") == "search"]
    p.check(any("RequestId" in s["attributes"].get("columns", []) for s in searches),
            "kibana: no saved search showing RequestId")

    dashboards = [o for o in objects if o.get("type") == "dashboard"]
    p.check(len(dashboards) >= 1, "kibana: no dashboard")
    for d in dashboards:
        panels = json.loads(d["attributes"].get("panelsJSON", "[]"))
        ref_names = {r["name"] for r in d.get("references", [])}
        for panel in panels:
            p.check(panel.get("panelRefName") in ref_names,
                    f"kibana: dashboard panel {panel.get('panelIndex')} has no matching reference")
        types = {r["type"] for r in d.get("references", [])}
        p.check({"visualization", "search"} <= types, "kibana: dashboard should show visualizations and the error search")

    template = json.loads(Path(template_path).read_text())
    p.check(template.get("index_patterns") == ["lct-api-*"], "elasticsearch template must match lct-api-*")
    props = template.get("template", {}).get("mappings", {}).get("properties", {})
    for field in ("@timestamp", "RequestId", "StatusCode", "Elapsed"):
        p.check(field in props, f"elasticsearch template: no mapping for {field}")
    return p.finish("kibana saved objects")


# --- Kubernetes -------------------------------------------------------------------------------

def load_docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_key(env: dict[str, dict], name: str) -> str | None:
    """The Secret key an env variable is read from, or None."""
    return ((env.get(name, {}).get("valueFrom") or {}).get("secretKeyRef") or {}).get("key")


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def comment_paths(directory: Path) -> list[tuple[Path, str]]:
    """Repository paths (k8s/..., deploy/..., docs/..., scripts/...) named in the comments of the
    YAML files under `directory`."""
    found = []
    for path in sorted(directory.rglob("*.yaml")):
        for line in path.read_text().splitlines():
            comment = line.partition("#")[2] if "#" in line else ""
            for match in re.finditer(r"(?:^|[\s(`'\"])((?:k8s|deploy|docs|scripts)/[\w./-]*[\w/])", comment):
                found.append((path, match.group(1)))
    return found


def check_k8s(rendered: str, secret_template: str) -> int:
    p = Problems()
    docs = load_docs(rendered)
    index = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    secret = load_docs(secret_template)[0]
    secret_keys = set((secret.get("stringData") or {}) | (secret.get("data") or {}))

    for d in docs:
        if d["kind"] != "Namespace":
            p.check(d["metadata"].get("namespace") == "lct", f"{d['kind']}/{d['metadata']['name']} is not in namespace lct")
    p.check(("Namespace", "lct") in index, "Namespace lct is missing")
    for path, named in comment_paths(ROOT / "k8s"):
        p.check((ROOT / named).exists(), f"{path.relative_to(ROOT)}: a comment names {named}, which does not exist")
    p.check(("Secret", "lct-secrets") not in index, "the base must not contain the Secret (template only)")
    for key, value in (secret.get("stringData") or {}).items():
        if "password" in key or "secret" in key or "keyfile" in key:
            p.check("change-me" in value, f"secret template: {key} must be a placeholder (change-me)")

    dep = index.get(("Deployment", "lct"))
    if not p.check(dep is not None, "Deployment lct is missing"):
        return p.finish("kubernetes consistency")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    container = next(c for c in pod["containers"] if c["name"] == "lct")
    # The HPA owns the replica count: a replicas field would reset it on every `kubectl apply`.
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = index.get((ref["kind"], ref["name"]))
        p.check(target is None or "replicas" not in target["spec"],
                f"{ref['kind']} {ref['name']}: must not set spec.replicas, HorizontalPodAutoscaler {hpa['metadata']['name']} owns it")
    p.check(labels_match(spec["selector"]["matchLabels"], pod_labels), "Deployment lct: selector does not match pod labels")

    config = index.get(("ConfigMap", "lct-config"), {}).get("data", {})
    for ref in container.get("envFrom", []):
        name = (ref.get("configMapRef") or {}).get("name")
        if name:
            p.check(("ConfigMap", name) in index, f"Deployment lct: envFrom ConfigMap {name} is missing")
    env = {e["name"]: e for e in container.get("env", [])}
    p.check(env.get("LCT_POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
            "Deployment lct: LCT_POD_NAME must come from fieldRef metadata.name")
    p.check(env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP"
            and env.get("LCT_POD_ADDRESS", {}).get("value") == "$(POD_IP):8080",
            "Deployment lct: LCT_POD_ADDRESS must be $(POD_IP):8080 with POD_IP from status.podIP")
    template_text = Path(secret_template).read_text()
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref.get("optional"):
            # Optional keys: lct-secrets' are documented (commented out) in the template; another
            # Secret is one an operator creates (ECK's APM token).
            p.check(ref["name"] != "lct-secrets" or re.search(rf"^\s*#?\s*{re.escape(ref['key'])}:", template_text, re.M),
                    f"Deployment lct: env {e['name']} refers to the optional {ref['name']}/{ref['key']}, not documented in the secret template")
        elif ref:
            p.check(ref["name"] == "lct-secrets" and ref["key"] in secret_keys,
                    f"Deployment lct: env {e['name']} refers to {ref['name']}/{ref['key']}, not in the secret template")

    # Credentials of the log and trace shipping come from Secrets, when they exist at all; the
    # ConfigMap (readable by whoever may read the namespace's configuration) holds none.
    for name in ("LCT_ELASTICSEARCH_URL", "LCT_ELASTICSEARCH_API_KEY", "LCT_APM_SECRET_TOKEN"):
        ref = (env.get(name, {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        p.check(ref.get("optional") is True,
                f"Deployment lct: {name} must come from a Secret, optional (lct runs without it)")
    apm = (env.get("LCT_APM_SECRET_TOKEN", {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    p.check(apm.get("name", "").endswith("-apm-token") and apm.get("key") == "secret-token",
            "Deployment lct: LCT_APM_SECRET_TOKEN must come from ECK's <ApmServer name>-apm-token, key secret-token")
    for key, value in config.items():
        url = urlparse(str(value)) if "://" in str(value) else None
        p.check(not re.search(r"(_TOKEN|_API_KEY|PASSWORD|_SECRET)$", key) and not (url and (url.username or url.password)),
                f"ConfigMap lct-config: {key} looks like a credential; put it in a Secret")
    for d in docs:
        for v in d.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            if (v.get("secret") or {}).get("secretName") == "lct-secrets":
                for item in v["secret"].get("items", []):
                    p.check(item["key"] in secret_keys,
                            f"{d['kind']}/{d['metadata']['name']}: secret key {item['key']} not in the secret template")
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    p.check(ref["key"] in secret_keys,
                            f"{d['kind']}/{d['metadata']['name']}: secret key {ref['key']} not in the secret template")
    p.check(env.get("LCT_TOKEN_SECRET", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "token-secret",
            "Deployment lct: LCT_TOKEN_SECRET must come from the Secret's token-secret (one key for every replica)")
    p.check(config.get("LCT_CLIENT_IP_HEADER", "").lower() == "x-forwarded-for",
            "ConfigMap lct-config: LCT_CLIENT_IP_HEADER must be x-forwarded-for (set by the Ingress controller)")
    max_connections = str(config.get("LCT_MAX_CONNECTIONS", ""))
    p.check(max_connections.isdigit() and int(max_connections) > 0,
            "ConfigMap lct-config: LCT_MAX_CONNECTIONS must be set explicitly (a number above 0)")
    hops = str(config.get("LCT_TRUSTED_PROXY_HOPS", ""))
    p.check(hops.isdigit() and int(hops) >= 1, "ConfigMap lct-config: LCT_TRUSTED_PROXY_HOPS must be a number of at least 1")
    p.check(config.get("LCT_V1", "open") in ("open", "read-only", "off"), "ConfigMap lct-config: LCT_V1 must be open, read-only or off")
    redis_url = env.get("LCT_REDIS_URL", {}).get("value", "")
    p.check("$(REDIS_PASSWORD)" in redis_url and list(env).index("REDIS_PASSWORD") < list(env).index("LCT_REDIS_URL"),
            "Deployment lct: LCT_REDIS_URL must expand $(REDIS_PASSWORD) defined before it")

    p.check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readiness",
            "Deployment lct: readinessProbe must GET /readiness")
    p.check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/liveness",
            "Deployment lct: livenessProbe must GET /liveness")

    # /readiness waits up to CHECK_TIMEOUT for the event store and then answers 503 itself; a probe
    # that gives up first turns a slow store into a timeout instead of that answer.
    check_timeout = re.search(r"const CHECK_TIMEOUT: Duration = Duration::from_secs\((\d+)\)",
                              (ROOT / "api/src/health.rs").read_text())
    p.check(check_timeout is not None
            and container.get("readinessProbe", {}).get("timeoutSeconds", 1) > int(check_timeout.group(1)),
            f"Deployment lct: readinessProbe timeoutSeconds must exceed /readiness's own check timeout "
            f"({check_timeout.group(1) if check_timeout else '?'} s, api/src/health.rs CHECK_TIMEOUT)")

    # Probes and scrapes through the admin listener: on the public one they count against
    # LCT_MAX_CONNECTIONS, and a full pod would fail its liveness probe and be restarted.
    admin_port = listen_port(config.get("LCT_ADMIN_LISTEN"))
    p.check(admin_port is not None and admin_port != listen_port(config.get("LCT_LISTEN")),
            "ConfigMap lct-config: LCT_ADMIN_LISTEN must set an admin listener on a port of its own")
    ports = {pt.get("name"): pt["containerPort"] for pt in container.get("ports", [])}
    p.check(admin_port is not None and ports.get("admin") == admin_port,
            f"Deployment lct: needs a container port named admin on {admin_port} (LCT_ADMIN_LISTEN)")
    admin_refs = {"admin", admin_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p.check(container.get(probe, {}).get("httpGet", {}).get("port") in admin_refs,
                f"Deployment lct: {probe} must use the admin port, which no connection cap refuses")
    annotations = spec["template"]["metadata"].get("annotations", {})
    p.check(str(annotations.get("prometheus.io/port")) == str(admin_port),
            f"Deployment lct: the prometheus.io/port annotation must be the admin port ({admin_port})")
    res = container.get("resources", {})
    p.check("cpu" in res.get("requests", {}) and "memory" in res.get("limits", {}),
            "Deployment lct: needs CPU requests (for the HPA) and memory limits")
    # Pods are not evenly loaded (new pods get only new connections, a drained pod's clients land
    # on the others), so the request covers a pod at its cap with the highest figure measured: a
    # pod above its request is the first the kubelet evicts under memory pressure.
    cap = int(config.get("LCT_MAX_CONNECTIONS") or lct_setting_default("LCT_MAX_CONNECTIONS") or 0)
    baseline, per_connection, working_set = measured_pod_memory(cap)
    request = k8s_bytes(res.get("requests", {}).get("memory"))
    p.check(request is not None and request >= working_set,
            f"Deployment lct: memory request {res.get('requests', {}).get('memory')} must cover a pod at LCT_MAX_CONNECTIONS "
            f"({cap} x {per_connection / 1024:.1f} KiB + {baseline / 2**20:.0f} MiB = {working_set / 2**20:.0f} MiB, "
            "docs/benchmarks/fanout-cluster.json)")

    grace = float(config.get("LCT_SHUTDOWN_GRACE", 20))
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    cmd = pre_stop.get("exec", {}).get("command", [])
    sleep = float(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" else float(pre_stop.get("sleep", {}).get("seconds", 0))
    p.check(sleep > 0, "Deployment lct: preStop sleep is missing")
    budget = sleep + grace + TELEMETRY_FLUSH_SECONDS + SHUTDOWN_MARGIN_SECONDS
    p.check(pod.get("terminationGracePeriodSeconds", 30) > budget,
            f"Deployment lct: terminationGracePeriodSeconds must exceed preStop ({sleep:g}s) + LCT_SHUTDOWN_GRACE ({grace:g}s) "
            f"+ the telemetry flushes ({TELEMETRY_FLUSH_SECONDS}s) + {SHUTDOWN_MARGIN_SECONDS}s, i.e. {budget:g}s")

    # The Service "lct" would give every pod LCT_SERVICE_HOST, LCT_PORT, LCT_PORT_80_TCP...: names
    # in lct's own LCT_ settings namespace, which no one set on purpose.
    p.check(pod.get("enableServiceLinks") is False, "Deployment lct: enableServiceLinks must be false")
    sc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    p.check(sc.get("runAsNonRoot") or csc.get("runAsNonRoot"), "Deployment lct: must run as non-root")
    p.check(csc.get("readOnlyRootFilesystem") is True, "Deployment lct: readOnlyRootFilesystem must be true")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    data_vol = volumes.get(mounts.get(config.get("LCT_DATA_DIR", "/var/lib/lct"), ""), {})
    p.check("emptyDir" in data_vol, "Deployment lct: LCT_DATA_DIR must be an emptyDir volume")
    p.check(any(t.get("topologyKey") == "kubernetes.io/hostname" for t in pod.get("topologySpreadConstraints", [])),
            "Deployment lct: needs a topologySpreadConstraint across nodes")

    svc = index.get(("Service", "lct"))
    p.check(svc is not None and labels_match(svc["spec"]["selector"], pod_labels), "Service lct must select the lct pods")
    port_names = {pt["name"] for pt in container.get("ports", [])}
    if svc:
        for pt in svc["spec"]["ports"]:
            p.check(pt.get("targetPort") in port_names or pt.get("targetPort") == 8080,
                    f"Service lct: targetPort {pt.get('targetPort')} is not a container port")
    # The admin listener has no caps and no rate limits: no Service (hence no Ingress) reaches it.
    for other in (d for d in docs if d["kind"] == "Service" and labels_match(d["spec"].get("selector"), pod_labels)):
        for pt in other["spec"].get("ports", []):
            p.check(pt.get("targetPort", pt.get("port")) not in admin_refs,
                    f"Service {other['metadata']['name']}: must not target the admin port ({pt.get('targetPort')})")

    ing = index.get(("Ingress", "lct"))
    if p.check(ing is not None, "Ingress lct is missing"):
        ann = ing["metadata"].get("annotations", {})
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            p.check(ann.get(f"nginx.ingress.kubernetes.io/{key}") == "3600", f"Ingress lct: {key} must be 3600")
        check_body_limit(p, "Ingress lct: proxy-body-size", ann.get("nginx.ingress.kubernetes.io/proxy-body-size"))
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]["name"]
                p.check(("Service", backend) in index, f"Ingress lct: backend Service {backend} is missing")
                port = path["backend"]["service"].get("port", {})
                p.check(port.get("name") != "admin" and (admin_port is None or port.get("number") != admin_port),
                        "Ingress lct: must not expose the admin port")

    check_network_policies(p, docs, index, pod, pod_labels, admin_port)

    hpa = index.get(("HorizontalPodAutoscaler", "lct"))
    if p.check(hpa is not None, "HorizontalPodAutoscaler lct is missing"):
        check_hpa(p, hpa, index, pod.get("terminationGracePeriodSeconds", 30))
        # Room for a drained or failed neighbour's clients, who reconnect at once: the target is at
        # most half of what a pod accepts.
        targets = [int(m["pods"]["target"]["averageValue"]) for m in hpa["spec"]["metrics"] if m.get("type") == "Pods"]
        p.check(max_connections.isdigit() and all(t * 2 <= int(max_connections) for t in targets),
                f"HPA lct: the connections target {targets} must be at most half of LCT_MAX_CONNECTIONS ({max_connections or 'unset'})")

    # One pod drained at a time, whatever the replica count: minAvailable 1 would let a node drain
    # evict all but one pod at once, and their clients would all reconnect to the last one.
    pdb = index.get(("PodDisruptionBudget", "lct"))
    p.check(pdb is not None and pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
            and labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels),
            "PodDisruptionBudget lct must have maxUnavailable 1 (and no minAvailable) and select the lct pods")

    sts = index.get(("StatefulSet", "mongodb"))
    if p.check(sts is not None, "StatefulSet mongodb is missing"):
        p.check(sts["spec"].get("replicas") == 3, "StatefulSet mongodb: replicas must be 3")
        p.check(bool(sts["spec"].get("volumeClaimTemplates")), "StatefulSet mongodb: needs volumeClaimTemplates")
        headless = index.get(("Service", sts["spec"]["serviceName"]))
        p.check(headless is not None and headless["spec"].get("clusterIP") == "None",
                "StatefulSet mongodb: its serviceName must be a headless Service")
        mongod = sts["spec"]["template"]["spec"]["containers"][0]
        cmd = " ".join(mongod.get("command", []) + mongod.get("args", []))
        p.check("--replSet" in cmd, "StatefulSet mongodb: mongod must run with --replSet")
        # Two members on one node would lose the majority with that node: spreading is a must.
        spread = [t for t in sts["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
                  if t.get("topologyKey") == "kubernetes.io/hostname"]
        p.check(bool(spread) and all(t.get("whenUnsatisfiable") == "DoNotSchedule" and t.get("maxSkew") == 1 for t in spread),
                "StatefulSet mongodb: members must spread over nodes with maxSkew 1 and whenUnsatisfiable DoNotSchedule")
        # Access control: clients authenticate (SCRAM), members with the shared keyfile.
        p.check(re.search(r"--auth\b", cmd) is not None and "--keyFile" in cmd,
                "StatefulSet mongodb: mongod must run with --auth and --keyFile")
        sts_pod = sts["spec"]["template"]["spec"]
        p.check(any((v.get("secret") or {}).get("secretName") == "lct-secrets"
                    and any(i.get("key") == "mongodb-keyfile" for i in v["secret"].get("items", []))
                    for v in sts_pod.get("volumes", [])),
                "StatefulSet mongodb: the keyfile must come from the Secret's mongodb-keyfile")
        p.check(secret_key(env_of(mongod), "MONGO_INITDB_ROOT_PASSWORD") in secret_keys,
                "StatefulSet mongodb: the administrator's password (MONGO_INITDB_ROOT_PASSWORD) must come from the Secret")
    job = index.get(("Job", "mongodb-init"))
    if p.check(job is not None, "Job mongodb-init is missing"):
        jpod = job["spec"]["template"]["spec"]
        cm = [v["configMap"]["name"] for v in jpod.get("volumes", []) if "configMap" in v]
        p.check(all(("ConfigMap", name) in index for name in cm), "Job mongodb-init: script ConfigMap is missing")
        members = next((e["value"] for e in jpod["containers"][0].get("env", []) if e["name"] == "RS_MEMBERS"), "")
        replicas = sts["spec"]["replicas"] if sts else 0
        p.check(members.count(",") + 1 == replicas, "Job mongodb-init: RS_MEMBERS must list every StatefulSet member")
        # The Job signs in as the administrator mongod created and creates lct's user, which lct
        # signs in as: the names, database and passwords must agree.
        jenv = env_of(jpod["containers"][0])
        value = lambda e, n: e.get(n, {}).get("value")  # noqa: E731
        senv = env_of(sts["spec"]["template"]["spec"]["containers"][0]) if sts else {}
        p.check(value(jenv, "MONGO_ROOT_USERNAME") is not None
                and value(jenv, "MONGO_ROOT_USERNAME") == value(senv, "MONGO_INITDB_ROOT_USERNAME")
                and secret_key(jenv, "MONGO_ROOT_PASSWORD") is not None
                and secret_key(jenv, "MONGO_ROOT_PASSWORD") == secret_key(senv, "MONGO_INITDB_ROOT_PASSWORD"),
                "Job mongodb-init: MONGO_ROOT_USERNAME/PASSWORD must be the administrator of the StatefulSet")
        p.check(config.get("LCT_MONGODB_USERNAME") is not None
                and value(jenv, "APP_USERNAME") == config.get("LCT_MONGODB_USERNAME")
                and value(jenv, "APP_DATABASE") == config.get("LCT_MONGODB_DATABASE")
                and config.get("LCT_MONGODB_AUTH_SOURCE") == "admin"
                and secret_key(jenv, "APP_PASSWORD") is not None
                and secret_key(jenv, "APP_PASSWORD") == secret_key(env, "LCT_MONGODB_PASSWORD"),
                "Job mongodb-init: APP_USERNAME, APP_DATABASE and APP_PASSWORD must be lct's LCT_MONGODB_USERNAME, "
                "LCT_MONGODB_DATABASE and LCT_MONGODB_PASSWORD (auth source admin)")
    script = index.get(("ConfigMap", "mongodb-init-script"), {}).get("data", {}).get("init-replica-set.js", "")
    p.check(script.encode() == (ROOT / "deploy/mongo/init-replica-set.js").read_bytes(),
            "ConfigMap mongodb-init-script differs from deploy/mongo/init-replica-set.js")

    # One Redis (the base), or the members of the Sentinel topology (components/redis-sentinel).
    redis_svc = index.get(("Service", "redis")) or index.get(("Service", "redis-nodes"))
    redis_workload = (index.get(("StatefulSet", "redis")) or index.get(("StatefulSet", "redis-node"))
                      or index.get(("Deployment", "redis")))
    p.check(redis_svc is not None and redis_workload is not None, "Redis workload and Service are required")
    if redis_workload:
        rc = redis_workload["spec"]["template"]["spec"]["containers"][0]
        p.check(any((e.get("valueFrom") or {}).get("secretKeyRef", {}).get("key") == "redis-password"
                    for e in rc.get("env", [])), "Redis: password must come from the Secret")
        check_redis_memory(p, f"{redis_workload['kind']} {redis_workload['metadata']['name']}",
                           " ".join(rc.get("command", []) + rc.get("args", [])),
                           {e["name"]: e.get("value", "") for e in rc.get("env", []) if "value" in e},
                           k8s_bytes(rc.get("resources", {}).get("limits", {}).get("memory")))
    return p.finish("kubernetes consistency")


def port_numbers(rule: dict, pod_spec: dict) -> set[int]:
    """The ports a NetworkPolicy ingress rule opens on pods of `pod_spec` (named ports resolved)."""
    named = {pt["name"]: pt["containerPort"] for c in pod_spec.get("containers", []) for pt in c.get("ports", []) if "name" in pt}
    return {named.get(pt.get("port"), pt.get("port")) for pt in rule.get("ports", [])}


def check_network_policies(p: Problems, docs: list[dict], index: dict, lct_pod: dict, lct_labels: dict, admin_port: int | None) -> None:
    """Ingress of the namespace is denied unless allowed: the ingress controller and monitoring reach
    lct, only lct and the members reach MongoDB and Redis."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    p.check(any(not np["spec"].get("podSelector") and "Ingress" in np["spec"].get("policyTypes", [])
                and not np["spec"].get("ingress") for np in policies),
            "NetworkPolicy: a default deny of ingress for every pod of the namespace is missing")

    def selecting(labels: dict) -> list[dict]:
        return [np for np in policies if np["spec"].get("podSelector")
                and labels_match(np["spec"]["podSelector"].get("matchLabels"), labels)]

    def peers_are_pods(rule: dict, allowed: list[dict]) -> bool:
        peers = rule.get("from") or []
        return bool(peers) and all(set(peer) == {"podSelector"}
                                   and any(labels_match(peer["podSelector"].get("matchLabels"), labels) for labels in allowed)
                                   for peer in peers)

    # lct: the public port from the ingress controller's namespace, the admin port from monitoring.
    lct_policies = selecting(lct_labels)
    if p.check(bool(lct_policies), "NetworkPolicy: none selects the lct pods"):
        opened: dict[int, list] = {}
        for rule in (r for np in lct_policies for r in np["spec"].get("ingress", [])):
            ports = port_numbers(rule, lct_pod)
            p.check(bool(ports) and bool(rule.get("from")), "NetworkPolicy lct: every rule names its ports and its sources")
            for port in ports:
                opened.setdefault(port, []).extend(rule.get("from") or [{}])
        namespaces = {port: {(peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                             for peer in peers} for port, peers in opened.items()}
        p.check(set(opened) == {8080, admin_port}, f"NetworkPolicy lct: must open exactly 8080 and the admin port, opens {sorted(opened)}")
        p.check(len(namespaces.get(8080, set()) - {None}) == 1 and None not in namespaces.get(8080, {None}),
                "NetworkPolicy lct: 8080 only from the ingress controller's namespace")
        p.check(namespaces.get(admin_port) == {"monitoring"},
                f"NetworkPolicy lct: the admin port only from the namespace monitoring, got {namespaces.get(admin_port)}")

    # The stores: their ports only from lct and from their own members.
    stores = [("MongoDB", ("StatefulSet", "mongodb"), {27017}),
              ("Redis", ("StatefulSet", "redis"), {6379}),
              ("Redis", ("StatefulSet", "redis-node"), {6379, 26379})]
    for what, key, expected in stores:
        workload = index.get(key)
        if workload is None:
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        chosen = selecting(labels)
        if not p.check(bool(chosen), f"NetworkPolicy: none selects the {what} pods ({key[1]})"):
            continue
        rules = [r for np in chosen for r in np["spec"].get("ingress", [])]
        opened = set().union(*(port_numbers(r, workload["spec"]["template"]["spec"]) for r in rules)) if rules else set()
        p.check(opened == expected, f"NetworkPolicy {key[1]}: must open {sorted(expected)}, opens {sorted(opened)}")
        p.check(all(peers_are_pods(r, [lct_labels, labels]) for r in rules),
                f"NetworkPolicy {key[1]}: only lct's pods and the {what} pods may connect")
        clients = [lct_labels, labels]
        job = index.get(("Job", "mongodb-init")) if key[1] == "mongodb" else None
        if job:
            clients.append(job["spec"]["template"]["metadata"]["labels"])
        for client in clients:
            p.check(any(labels_match(peer["podSelector"].get("matchLabels"), client)
                        for r in rules for peer in r.get("from") or [] if "podSelector" in peer),
                    f"NetworkPolicy {key[1]}: pods labelled {client} must be let in")


def check_hpa(p: Problems, hpa: dict, index: dict, termination_grace: float) -> None:
    """Scale on live connections per pod and on CPU; scale down one drain at a time."""
    target = hpa["spec"]["scaleTargetRef"]
    p.check((target["kind"], target["name"]) in index, "HPA lct: scale target does not exist")
    metrics = hpa["spec"]["metrics"]
    cpu = [m for m in metrics if m.get("resource", {}).get("name") == "cpu"]
    p.check(bool(cpu) and cpu[0]["resource"]["target"].get("averageUtilization") == 60, "HPA lct: CPU target must be 60%")
    pods = [m["pods"] for m in metrics if m.get("type") == "Pods"]
    p.check(len(pods) == 1 and pods[0]["metric"]["name"] == HPA_CONNECTIONS_METRIC
            and pods[0]["target"]["type"] == "AverageValue" and int(pods[0]["target"]["averageValue"]) > 0,
            f"HPA lct: needs a Pods metric {HPA_CONNECTIONS_METRIC} with an AverageValue target")
    p.check(metric_exported(HPA_CONNECTIONS_METRIC), f"HPA lct: lct does not export {HPA_CONNECTIONS_METRIC}")
    behavior = hpa["spec"].get("behavior", {})
    down = behavior.get("scaleDown", {})
    p.check(down.get("stabilizationWindowSeconds", 0) >= 300, "HPA lct: scale-down stabilization must be at least 300s")
    policies = down.get("policies", [])
    # Each removed pod drains (terminationGracePeriodSeconds) and its clients' reconnections reach
    # the metrics about a minute later; only then may the next pod go.
    p.check(bool(policies) and all(pol["type"] == "Pods" and pol["value"] == 1
                                   and pol["periodSeconds"] >= termination_grace + 60 for pol in policies),
            f"HPA lct: scale-down must remove one pod per period of at least {termination_grace + 60:.0f}s "
            "(terminationGracePeriodSeconds + 60s of metric delay)")
    p.check(bool(behavior.get("scaleUp", {}).get("policies")), "HPA lct: scale-up policies are missing")
    p.check(hpa["spec"].get("minReplicas", 1) >= 2, "HPA lct: minReplicas should keep 2 replicas")


def metric_exported(name: str) -> bool:
    """Whether lct's metrics registry names the series (api/src/metrics.rs)."""
    return f'"{name}"' in (ROOT / "api/src/metrics.rs").read_text()


# --- prometheus-adapter -----------------------------------------------------------------------

def check_adapter(values_path: str, rendered_hpa: str, out_path: str) -> int:
    """The adapter serves the HPA's Pods metric per pod from the series lct exports; writes its
    metrics query, with the adapter's template filled in, as a rule file for promtool."""
    p = Problems()
    values = yaml.safe_load(Path(values_path).read_text())
    docs = load_docs(rendered_hpa)
    hpa = next((d for d in docs if d["kind"] == "HorizontalPodAutoscaler"), None)
    wanted = [m["pods"]["metric"]["name"] for m in (hpa or {}).get("spec", {}).get("metrics", []) if m.get("type") == "Pods"]
    p.check(bool(wanted), "no Pods metric in the HPA")
    rules = (values.get("rules") or {}).get("custom") or []
    queries = []
    for name in wanted:
        rule = next((r for r in rules if (r.get("name") or {}).get("as") == name), None)
        if not p.check(rule is not None, f"prometheus-adapter: no custom rule serves {name}"):
            continue
        p.check(name in rule.get("seriesQuery", "") and metric_exported(name),
                f"prometheus-adapter: the rule for {name} must query the series lct exports")
        overrides = (rule.get("resources") or {}).get("overrides") or {}
        p.check((overrides.get("namespace") or {}).get("resource") == "namespace"
                and (overrides.get("pod") or {}).get("resource") == "pod",
                f"prometheus-adapter: the rule for {name} must map the namespace and pod labels")
        query = (rule.get("metricsQuery", "")
                 .replace("<<.Series>>", name)
                 .replace("<<.LabelMatchers>>", 'namespace="lct",pod=~"lct-.*"')
                 .replace("<<.GroupBy>>", "pod"))
        p.check("<<" not in query, f"prometheus-adapter: unknown template field in {rule.get('metricsQuery')}")
        queries.append({"record": f"adapter:{name}", "expr": query})
    Path(out_path).write_text(yaml.safe_dump({"groups": [{"name": "prometheus-adapter", "rules": queries}]}))
    return p.finish("prometheus-adapter rules")


# --- ingress-nginx ----------------------------------------------------------------------------

def check_ingress_nginx(values_path: str, rendered: str) -> int:
    """The controller's values keep each client's own address in X-Forwarded-For, where lct reads
    it LCT_TRUSTED_PROXY_HOPS (1) places from the right, and drop idle upstream connections before
    lct closes them."""
    p = Problems()
    if not p.check(Path(values_path).is_file(), f"{values_path} is missing"):
        return p.finish("ingress-nginx values")
    values = yaml.safe_load(Path(values_path).read_text()) or {}
    controller = values.get("controller") or {}
    config = {k: str(v) for k, v in (controller.get("config") or {}).items()}
    docs = load_docs(rendered)
    lct = next((d.get("data", {}) for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "lct-config"), {})
    # With Cluster, kube-proxy source-NATs every client that arrives through a node to that node's
    # address: all of them would share one client's rate limits and connection cap.
    p.check((controller.get("service") or {}).get("externalTrafficPolicy") == "Local",
            "ingress-nginx: controller.service.externalTrafficPolicy must be Local (Cluster hides client addresses)")
    # The controller sends X-Forwarded-For: $remote_addr, one entry; lct takes the right-most.
    p.check(str(lct.get("LCT_TRUSTED_PROXY_HOPS")) == "1",
            "ConfigMap lct-config: LCT_TRUSTED_PROXY_HOPS must be 1 behind ingress-nginx (it sends one X-Forwarded-For entry)")
    # compute-full-forwarded-for appends the connection's peer (a load balancer) after what came
    # in: the right-most entry would no longer be the client.
    p.check(config.get("compute-full-forwarded-for", "false") != "true",
            "ingress-nginx: compute-full-forwarded-for must stay off (the right-most entry would be the load balancer)")
    if config.get("use-forwarded-headers") == "true":
        cidrs = [c.strip() for c in config.get("proxy-real-ip-cidr", "0.0.0.0/0").split(",")]
        p.check(not {"0.0.0.0/0", "::/0"} & set(cidrs),
                "ingress-nginx: use-forwarded-headers needs proxy-real-ip-cidr narrowed to the load balancer "
                "(the default 0.0.0.0/0 trusts whatever X-Forwarded-For a client sends)")
    # lct closes a kept-alive connection after LCT_HEADER_READ_TIMEOUT_MS without a request; the
    # controller must let go first, or it sends a request on a closing connection (a 502).
    idle = lct_idle_seconds(lct)
    keepalive = config.get("upstream-keepalive-timeout")
    p.check(keepalive is not None and keepalive.isdigit() and int(keepalive) < idle,
            f"ingress-nginx: upstream-keepalive-timeout ({keepalive}) must be below lct's idle timeout ({idle:g}s)")
    return p.finish("ingress-nginx values")


# --- Redis Sentinel topology (compose override and k8s component) -----------------------------

def check_compose_sentinel(config_json: str) -> int:
    p = Problems()
    services = json.loads(Path(config_json).read_text()).get("services", {})
    check_compose_redis_memory(p, services)
    sentinels = sorted(n for n, svc in services.items() if (svc.get("command") or [])[-1:] == ["sentinel"])
    servers = sorted(n for n, svc in services.items() if (svc.get("command") or [])[-1:] == ["server"])
    p.check(len(sentinels) >= 3 and len(sentinels) % 2 == 1, f"an odd number of at least 3 sentinels, got {sentinels}")
    p.check(len(servers) >= 2 and "redis" in servers, f"a master and a replica, got {servers}")
    members = {n: services[n] for n in sentinels + servers}
    names = {svc.get("environment", {}).get("SENTINEL_MASTER") for svc in members.values()}
    p.check(len(names) == 1, f"every member names the same master: {names}")
    for n, svc in members.items():
        e = svc.get("environment", {})
        p.check(e.get("REDIS_ANNOUNCE") == n, f"{n}: REDIS_ANNOUNCE must be its service name")
        p.check(sorted(e.get("SENTINEL_PEERS", "").split()) == sentinels, f"{n}: SENTINEL_PEERS must list the sentinels")
        p.check(e.get("REDIS_FIRST_MASTER") == "redis", f"{n}: REDIS_FIRST_MASTER must be redis")
        script = [v for v in svc.get("volumes", []) if v.get("target") == "/scripts/redis-sentinel.sh"]
        p.check(bool(script) and Path(script[0]["source"]).resolve() == (ROOT / "deploy/redis/redis-sentinel.sh"),
                f"{n}: must mount deploy/redis/redis-sentinel.sh")
    for name in LCT_SERVICES:
        e = services.get(name, {}).get("environment", {})
        listed = sorted(h.rsplit(":", 1)[0] for h in e.get("LCT_REDIS_SENTINELS", "").split(","))
        p.check(listed == sentinels and all(h.endswith(":26379") for h in e.get("LCT_REDIS_SENTINELS", "").split(",")),
                f"{name}: LCT_REDIS_SENTINELS must list every sentinel on port 26379")
        p.check(e.get("LCT_REDIS_SENTINEL_MASTER") in names, f"{name}: LCT_REDIS_SENTINEL_MASTER must be {names}")
        p.check(bool(e.get("LCT_REDIS_SENTINEL_PASSWORD")), f"{name}: the sentinels require a password")
        p.check(all(s in (services[name].get("depends_on") or {}) for s in sentinels), f"{name}: must wait for the sentinels")
    return p.finish("compose sentinel consistency")


def check_k8s_sentinel(rendered: str, secret_template: str) -> int:
    p = Problems()
    docs = load_docs(rendered)
    index = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    secret = load_docs(secret_template)[0]
    secret_keys = set((secret.get("stringData") or {}) | (secret.get("data") or {}))
    p.check(("StatefulSet", "redis") not in index and ("Service", "redis") not in index,
            "the single Redis of the base must be gone")
    sts = index.get(("StatefulSet", "redis-node"))
    if not p.check(sts is not None, "StatefulSet redis-node is missing"):
        return p.finish("kubernetes sentinel consistency")
    replicas = sts["spec"]["replicas"]
    p.check(replicas >= 3 and replicas % 2 == 1, "redis-node: an odd number of at least 3 members")
    headless = index.get(("Service", sts["spec"]["serviceName"]))
    p.check(headless is not None and headless["spec"].get("clusterIP") == "None"
            and headless["spec"].get("publishNotReadyAddresses") is True,
            "redis-node: its serviceName must be a headless Service publishing not-ready addresses")
    service = sts["spec"]["serviceName"]
    hosts = [f"redis-node-{i}.{service}" for i in range(replicas)]
    pod = sts["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    p.check(set(containers) == {"redis", "sentinel"}, "redis-node: a redis and a sentinel container")
    master_names = set()
    for c in containers.values():
        env = {e["name"]: e for e in c.get("env", [])}
        master_names.add(env.get("SENTINEL_MASTER", {}).get("value"))
        p.check(env.get("SENTINEL_PEERS", {}).get("value", "").split() == hosts, f"redis-node/{c['name']}: SENTINEL_PEERS must be {hosts}")
        p.check(env.get("REDIS_FIRST_MASTER", {}).get("value") == hosts[0], f"redis-node/{c['name']}: REDIS_FIRST_MASTER must be {hosts[0]}")
        p.check(env.get("REDIS_ANNOUNCE", {}).get("value") == f"$(POD_NAME).{service}"
                and list(env).index("POD_NAME") < list(env).index("REDIS_ANNOUNCE"),
                f"redis-node/{c['name']}: REDIS_ANNOUNCE must be $(POD_NAME).{service} after POD_NAME")
        p.check(c.get("command", [])[-2:] in (["/scripts/redis-sentinel.sh", "server"], ["/scripts/redis-sentinel.sh", "sentinel"]),
                f"redis-node/{c['name']}: must run redis-sentinel.sh")
    p.check(len(master_names) == 1, f"redis-node: both containers name the same master: {master_names}")
    script = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("redis-sentinel-script")), {})
    p.check(script.get("data", {}).get("redis-sentinel.sh", "").encode() == (ROOT / "deploy/redis/redis-sentinel.sh").read_bytes(),
            "the ConfigMap redis-sentinel-script differs from deploy/redis/redis-sentinel.sh")
    pdb = index.get(("PodDisruptionBudget", "redis-node"))
    p.check(pdb is not None and pdb["spec"].get("maxUnavailable") == 1, "redis-node: a PodDisruptionBudget with maxUnavailable 1")

    dep = index[("Deployment", "lct")]
    env = {e["name"]: e for e in next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "lct")["env"]}
    p.check(env.get("LCT_REDIS_SENTINELS", {}).get("value", "").split(",") == [f"{h}:26379" for h in hosts],
            f"Deployment lct: LCT_REDIS_SENTINELS must list {hosts} on port 26379")
    p.check(env.get("LCT_REDIS_SENTINEL_MASTER", {}).get("value") in master_names,
            "Deployment lct: LCT_REDIS_SENTINEL_MASTER must be the sentinels' master name")
    ref = (env.get("LCT_REDIS_SENTINEL_PASSWORD", {}).get("valueFrom") or {}).get("secretKeyRef", {})
    p.check(ref.get("key") in secret_keys, "Deployment lct: LCT_REDIS_SENTINEL_PASSWORD must come from the Secret")
    return p.finish("kubernetes sentinel consistency")


COMMANDS = {
    "compose": check_compose,
    "nginx": check_nginx,
    "grafana": check_grafana,
    "grafana-rules": grafana_rules,
    "kibana": check_kibana,
    "k8s": check_k8s,
    "adapter": check_adapter,
    "ingress-nginx": check_ingress_nginx,
    "compose-sentinel": check_compose_sentinel,
    "k8s-sentinel": check_k8s_sentinel,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        print("subcommands:", ", ".join(COMMANDS))
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
