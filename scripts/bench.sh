#!/usr/bin/env bash
# Runs the benchmarks of Cerebro beside supervisord and monit, and writes
# bench/RESULTS.md. Installs the peers when missing: Debian's supervisor and
# monit, and superlance (memmon) from PyPI in target/bench-venv.
# Usage: scripts/bench.sh [all|restart|memory|cpu|overhead|placement] [--smoke]
# --smoke (run by scripts/test.sh) uses the debug build and tiny counts: it
# proves every benchmark still runs; its numbers mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/bench.sh: run as root (the tasksitter's cgroup backend needs it)" >&2; exit 1; }
missing=()
command -v supervisord >/dev/null || missing+=(supervisor)
command -v monit >/dev/null || missing+=(monit)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian starts the packaged daemons; the benchmarks run their own.
for service in supervisor monit; do
    systemctl disable --now "$service" >/dev/null 2>&1 || service "$service" stop >/dev/null 2>&1 || true
done
if [ ! -x target/bench-venv/bin/memmon ]; then
    python3 -m venv target/bench-venv
    target/bench-venv/bin/pip install --quiet superlance
fi
profile=release
for arg in "$@"; do [ "$arg" = --smoke ] && profile=debug; done
if [ "$profile" = release ]; then
    cargo build --release -p tasksitter -p machinesitter -p cerebro-bench
else
    cargo build -p tasksitter -p machinesitter -p cerebro-bench
fi
# Flags alone mean every benchmark.
if [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; then
    set -- all "$@"
fi
exec "target/$profile/cerebro-bench" "${@:-all}"
