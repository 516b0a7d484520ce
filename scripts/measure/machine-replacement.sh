#!/usr/bin/env bash
# Usage: machine-replacement.sh [POLL_INTERVAL]. Kill a local machine (machinesitter + tasks) and time until every instance runs again elsewhere. Needs target/release.
set -e
POLL=${1:-2s}
d=$(mktemp -d)
cat > $d/c.toml <<T
port = 0
state_dir = "state"
poll_interval = "$POLL"
[provider]
kind = "local"
zones = ["a"]
machine_cpu = 2
machine_mem = 512
machinesitter_bin = "$(cd "$(dirname "$0")/../.." && pwd)/target/release/machinesitter"
T
$(cd "$(dirname "$0")/../.." && pwd)/target/release/clustersitter --config $d/c.toml --address-file $d/addr 2>/dev/null &
cs=$!
while [ ! -s $d/addr ]; do sleep 0.05; done
A=http://$(cat $d/addr)
curl -s -XPUT $A/api/v1/jobs/m -d '{"deployment_layout":{"a":{"cpu":2}},"task_configuration":{"name":"m","command":"sleep 777","cpu":1.5,"mem":10}}' -o /dev/null
running() { curl -s $A/api/v1/jobs/m | jq -r '[.instances[] | select(.state=="running")] | length'; }
for i in 1 2 3; do
  while [ "$(running)" != 2 ]; do sleep 0.02; done
  victim=$(curl -s $A/api/v1/jobs/m | jq -r '.instances[0].machine')
  t0=$(date +%s%N)
  pkill -9 -f "$d/state/machines/$victim" || true
  while [ "$(curl -s $A/api/v1/jobs/m | jq -r --arg v "$victim" '[.instances[] | select(.state=="running" and .machine!=$v)] | length')" != 2 ]; do sleep 0.02; done
  t1=$(date +%s%N)
  echo "poll $POLL, run $i: machine $victim killed -> both instances running again in $(( (t1-t0)/1000000 )) ms"
done
kill $cs; wait $cs 2>/dev/null || true
pkill -9 -f "$d/state" || true
rm -rf $d
