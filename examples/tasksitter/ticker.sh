#!/bin/sh
# A small workload for trying the tasksitter: prints a line a second on
# stdout, a warning every tenth second on stderr, and exits on SIGTERM.
trap 'echo "ticker: got SIGTERM, bye"; exit 0' TERM
n=0
while :; do
    n=$((n + 1))
    echo "ticker: tick $n at $(date -u +%H:%M:%S)"
    [ $((n % 10)) -eq 0 ] && echo "ticker: warning at tick $n" >&2
    sleep 1
done
