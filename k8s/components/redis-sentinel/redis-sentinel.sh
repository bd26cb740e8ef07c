#!/bin/sh
# Starts one member of a Redis Sentinel deployment for lct: a Redis server (`server`) or a
# sentinel (`sentinel`). docker-compose.sentinel.yml and the k8s component
# k8s/components/redis-sentinel run this same file (the two copies must stay identical).
#
# Both ask the sentinels named in SENTINEL_PEERS which server is the master now, so that a
# restarted member rejoins the deployment as it is after a failover; only when none answers
# (a fresh deployment) is REDIS_FIRST_MASTER the master.
#
# Environment:
#   REDIS_PASSWORD      password of the servers and of the sentinels
#   REDIS_ANNOUNCE      host name the others reach this member by
#   REDIS_FIRST_MASTER  host name of the master of a fresh deployment
#   SENTINEL_PEERS      host names of the sentinels, separated by spaces
#   SENTINEL_MASTER     name of the master in the sentinels (default lct; LCT_REDIS_SENTINEL_MASTER)
#   SENTINEL_QUORUM     sentinels that must agree that the master is down (default 2)
#   REDIS_DATA          data directory of a server (default /data)
#   REDIS_MAXMEMORY     memory bound of a server (default 400mb, below 80 % of a 512Mi limit);
#                       only keys with a TTL are evicted (volatile-ttl): lct's keys without one
#                       (the pod registry, lct:secret:token-key) must stay
#   SENTINEL_CONFIG     configuration file a sentinel writes and keeps (default /tmp/sentinel.conf)
set -eu

role="${1:?usage: redis-sentinel.sh server|sentinel}"
name="${SENTINEL_MASTER:-lct}"

current_master() {
  for peer in ${SENTINEL_PEERS:-}; do
    answer="$(REDISCLI_AUTH="${REDIS_PASSWORD}" timeout 3 redis-cli -h "${peer}" -p 26379 --raw \
      SENTINEL get-master-addr-by-name "${name}" 2>/dev/null | head -n 1)" || answer=""
    case "${answer}" in
      "" | *" "* | ERR* | NOAUTH* | WRONGPASS*) ;;
      *) echo "${answer}"; return 0 ;;
    esac
  done
  echo "${REDIS_FIRST_MASTER}"
}

master="$(current_master)"
case "${role}" in
  server)
    set -- --requirepass "${REDIS_PASSWORD}" --masterauth "${REDIS_PASSWORD}" \
      --replica-announce-ip "${REDIS_ANNOUNCE}" --appendonly yes --dir "${REDIS_DATA:-/data}" \
      --maxmemory "${REDIS_MAXMEMORY:-400mb}" --maxmemory-policy volatile-ttl
    if [ "${master}" != "${REDIS_ANNOUNCE}" ]; then
      set -- "$@" --replicaof "${master}" 6379
    fi
    exec redis-server "$@"
    ;;
  sentinel)
    config="${SENTINEL_CONFIG:-/tmp/sentinel.conf}"
    cat >"${config}" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${REDIS_ANNOUNCE}
requirepass ${REDIS_PASSWORD}
sentinel sentinel-pass ${REDIS_PASSWORD}
sentinel monitor ${name} ${master} 6379 ${SENTINEL_QUORUM:-2}
sentinel auth-pass ${name} ${REDIS_PASSWORD}
sentinel down-after-milliseconds ${name} 5000
sentinel failover-timeout ${name} 60000
sentinel parallel-syncs ${name} 1
CONF
    exec redis-server "${config}" --sentinel
    ;;
  *)
    echo "unknown role ${role}: server or sentinel" >&2
    exit 2
    ;;
esac
