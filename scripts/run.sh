#!/usr/bin/env bash
# Runs Cerebro on this machine. Until the clustersitter lands this runs one
# tasksitter around the example workload, with its web page and JSON API on
# http://127.0.0.1:8080 and its logs under ./run/logs. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tasksitter
mkdir -p run/logs
echo "Cerebro tasksitter: http://127.0.0.1:8080/stats  (JSON: /api/v1/status, logs: /logs?stream=stdout)"
exec target/release/tasksitter \
    --name ticker \
    --command "$PWD/examples/tasksitter/ticker.sh" \
    --cpu 0.5 --mem 100 --ensure-alive \
    --stdout-location run/logs --stderr-location run/logs \
    --http-monitoring --http-monitoring-port 8080
