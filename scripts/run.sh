#!/usr/bin/env bash
# Runs Cerebro on this machine. Until the clustersitter lands this runs one
# machinesitter (state under ./run/machine) with the example task "ticker",
# its pages on http://127.0.0.1:40000/ and its JSON API under /api/v1.
# Ctrl-C stops the machinesitter and, for this demo, its tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update && apt-get install -y curl; }
cargo build --release -p tasksitter -p machinesitter
mkdir -p run
target/release/machinesitter --state-dir run/machine --port 40000 --on-exit stop \
    --address-file run/machinesitter.address &
sitter=$!
trap 'kill -TERM $sitter 2>/dev/null; wait $sitter' INT TERM
for _ in $(seq 100); do
    [ -s run/machinesitter.address ] && break
    kill -0 $sitter 2>/dev/null || { echo "the machinesitter did not start" >&2; exit 1; }
    sleep 0.1
done
curl -sf -XPUT http://127.0.0.1:40000/api/v1/tasks/ticker \
    -d "{\"command\": \"$PWD/examples/tasksitter/ticker.sh\", \"cpu\": 0.5, \"mem\": 100, \"ensure_alive\": true}" \
    -o /dev/null
echo "Cerebro machinesitter: http://127.0.0.1:40000/  (JSON: /api/v1/tasks, logs: /api/v1/tasks/ticker/logs/stdout?tail=20)"
wait $sitter
