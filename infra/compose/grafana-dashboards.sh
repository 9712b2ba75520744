#!/bin/sh
# One-shot (docker-compose.yml service `grafana-dashboards`, image curlimages/curl): downloads
# RabbitMQ's official overview dashboard (grafana.com id 10991) at a pinned revision into the
# volume Grafana reads /var/lib/grafana/dashboards/rabbitmq from. It is not kept in this
# repository (its licence is the RabbitMQ team's); it needs internet access at deploy time.
#
# Offline, or if the download does not match the pinned checksum, it logs a warning and exits 0:
# Grafana starts anyway with photopipe's own dashboards (infra/grafana/dashboards), and only the
# RabbitMQ overview is missing. A copy downloaded earlier stays in the volume.
set -u

id="${RABBITMQ_DASHBOARD_ID:-10991}"
revision="${RABBITMQ_DASHBOARD_REVISION:-11}"
sha256="${RABBITMQ_DASHBOARD_SHA256:-66340fa3256d432287cba75ab5177eb058c77afa7d521a75d58099f95b1bff50}"
out="${DASHBOARD_DIR:-/dashboards}/rabbitmq-overview.json"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

if ! curl -fsSL --max-time 30 --retry 2 -o "$tmp" "https://grafana.com/api/dashboards/$id/revisions/$revision/download"; then
  echo "grafana-dashboards: WARNING could not download dashboard $id revision $revision (no internet?);" \
       "Grafana starts without the RabbitMQ overview" >&2
  exit 0
fi
got="$(sha256sum "$tmp" | cut -d' ' -f1)"
if [ "$got" != "$sha256" ]; then
  echo "grafana-dashboards: WARNING dashboard $id revision $revision has sha256 $got, expected $sha256;" \
       "not installed (set RABBITMQ_DASHBOARD_SHA256 after reviewing the new file)" >&2
  exit 0
fi
# The export names its data source through an import-time input; provisioning has no inputs, so
# point it at the provisioned Prometheus data source (uid `prometheus`).
# shellcheck disable=SC2016 # literal ${...} placeholders, not shell expansions
sed -e 's/\${DS_PROMETHEUS}/prometheus/g' -e 's/\${DS_PROMETHEUS_DS}/prometheus/g' "$tmp" > "$out.new" && mv "$out.new" "$out"
chmod 0644 "$out"
echo "grafana-dashboards: installed RabbitMQ overview ($id revision $revision) as $out"
