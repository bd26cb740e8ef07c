#!/usr/bin/env bash
# Installs the lct-api-* index template in Elasticsearch and imports the Kibana saved objects
# (data view, visualizations, saved search, dashboard) from lct-dashboard.ndjson.
# Idempotent: the template is PUT and the import overwrites objects with the same ids.
#
#   ELASTICSEARCH_URL=http://localhost:9200 KIBANA_URL=http://localhost:5601 \
#     bash deploy/kibana/import-saved-objects.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
es_url="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
kibana_url="${KIBANA_URL:-http://kibana:5601}"
template="${INDEX_TEMPLATE_FILE:-${here}/../elasticsearch/lct-api-index-template.json}"
objects="${SAVED_OBJECTS_FILE:-${here}/lct-dashboard.ndjson}"
wait_seconds="${WAIT_SECONDS:-300}"

deadline=$((SECONDS + wait_seconds))
until curl -fsS "${kibana_url}/api/status" 2>/dev/null | grep -q '"level":"available"'; do
  if ((SECONDS > deadline)); then
    echo "Kibana at ${kibana_url} is not available after ${wait_seconds}s" >&2
    exit 1
  fi
  sleep 5
done

echo "installing index template lct-api"
curl -fsS -X PUT "${es_url}/_index_template/lct-api" \
  -H 'Content-Type: application/json' --data-binary "@${template}"
echo

echo "importing $(wc -l <"${objects}") saved objects into Kibana"
response="$(curl -sS -X POST "${kibana_url}/api/saved_objects/_import?overwrite=true" \
  -H 'kbn-xsrf: true' --form "file=@${objects}")"
echo "${response}"
grep -q '"success":true' <<<"${response}"
