#!/usr/bin/env bash
# Kill -9 a tasksitter under a machinesitter ten times and time until a new
# workload runs and the old one is gone. Needs target/release (cargo build --release).
set -e
d=$(mktemp -d)
"$(dirname "$0")/../../target/release"/machinesitter --state-dir $d/s --port 0 --address-file $d/addr --on-exit stop 2>/dev/null &
ms=$!
while [ ! -s $d/addr ]; do sleep 0.05; done
a=http://$(cat $d/addr)
curl -sf -XPUT $a/api/v1/tasks/m -d '{"command":"sleep 1000","cpu":0.1,"mem":10}' -o /dev/null
for i in $(seq 10); do
  while :; do
    j=$(curl -s $a/api/v1/tasks/m)
    st=$(echo "$j" | jq -r .status.state.state); sp=$(echo "$j" | jq -r .tasksitter.pid)
    [ "$st" = running ] && break; sleep 0.01
  done
  wp=$(echo "$j" | jq -r .status.pid)
  t0=$(date +%s%N); kill -9 $sp
  while :; do
    np=$(pgrep -f "^sleep 1000" | grep -v "^$wp$" | head -1 || true)
    st=$(awk '{print $3}' /proc/$wp/stat 2>/dev/null || echo gone); [ -n "$np" ] && [ "$st" != S ] && [ "$st" != R ] && break
    true
  done
  t1=$(date +%s%N); echo "cycle $i: $(( (t1-t0)/1000000 )) ms (old workload $wp gone, new $np)"
done
kill -TERM $ms; wait $ms; rm -rf $d
