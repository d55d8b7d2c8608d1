#!/usr/bin/env bash
# Start Prometheus (Debian's package) on 127.0.0.1:9090 scraping the gateway, for operators who want
# Prometheus and Grafana beside the built-in /dashboard. No containers.
#   deploy/dashboards-up.sh [GATEWAY_HOST:PORT]      (default 127.0.0.1:8000)
# Stop it with: kill "$(cat "$MAAS_HOME/prometheus/pid")"
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-127.0.0.1:8000}
home=${MAAS_HOME:-$HOME/.maas}/prometheus
mkdir -p "$home/data"
if ! command -v prometheus >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q prometheus >/dev/null; else
        echo "Prometheus is not installed: sudo apt-get install prometheus" >&2; exit 1; fi
fi
sed "s/127.0.0.1:8000/$target/" deploy/prometheus/prometheus.yml >"$home/prometheus.yml"
prometheus --config.file="$home/prometheus.yml" --storage.tsdb.path="$home/data" \
    --web.listen-address=127.0.0.1:9090 >"$home/prometheus.log" 2>&1 &
echo $! >"$home/pid"
echo "Prometheus on http://127.0.0.1:9090 (pid $(cat "$home/pid")), scraping http://$target/metrics"
if command -v grafana-server >/dev/null; then
    echo "Grafana: grafana-server --homepath /usr/share/grafana cfg:default.paths.provisioning=$PWD/deploy/grafana/provisioning"
else
    echo "Grafana is not packaged by Debian; install it from Grafana's packages, then provision it from"
    echo "  deploy/grafana/provisioning (datasource: Prometheus on 127.0.0.1:9090; dashboard: deploy/grafana/dashboards)"
fi
