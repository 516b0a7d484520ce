#!/usr/bin/env bash
# Runs Cerebro on this machine: a local cluster (the clustersitter with the
# local provider, zones local-a and local-b) with the example job "ticker"
# loaded. Each "machine" is a machinesitter process on 127.0.0.1. The web UI
# is at http://127.0.0.1:30000/overview. Ctrl-C stops the cluster and, for
# this demo, its machines (--on-exit stop); state lives under ./run/cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tasksitter -p machinesitter -p cerebrod -p cerebro-cli
export PATH="$PWD/target/release:$PATH"
echo "Cerebro: http://127.0.0.1:30000/overview   (CLI: target/release/cerebro listjobs; the token for the UI's login: run/cluster/cluster-token)"
exec target/release/clustersitter --config examples/clusters/local.toml --on-exit stop
