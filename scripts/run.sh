#!/usr/bin/env bash
# Runs Cerebro on this machine: a local cluster (the clustersitter with the
# local provider, zones local-a and local-b) with the example job "ticker"
# loaded. Each "machine" is a machinesitter process on 127.0.0.1. The web UI
# is at http://127.0.0.1:30000/overview. Ctrl-C stops the cluster and, for
# this demo, its machines (--on-exit stop); state lives under ./run/cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
# Exactly the README's build command (same package set, profile and
# features): cargo unifies dependency features over the packages it is
# asked for, so building a subset here would recompile the crates whose
# features differ (about 19 of them) after `cargo build --release
# --workspace --bins`, and that build would recompile them back.
cargo build --release --workspace --bins
export PATH="$PWD/target/release:$PATH"
echo "Cerebro: http://127.0.0.1:30000/overview   (CLI: target/release/cerebro listjobs; the token for the UI's login: run/cluster/cluster-token)"
exec target/release/clustersitter --config examples/clusters/local.toml --on-exit stop
