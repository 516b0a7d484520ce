#!/bin/sh
# Cerebro machine boot, run once by cloud-init as EC2 user data: fetch the
# machinesitter and tasksitter from the clustersitter, check their SHA-256,
# install them and start the machinesitter, which registers with the cluster.
# CEREBRO_ROOT, CEREBRO_BIND, CEREBRO_PORT and CEREBRO_ADVERTISE_ADDRESS
# exist for the test harness that "boots" instances without a VM; on a real
# instance none is set.
set -eu

CLUSTER_URL=@CLUSTER_URL@
TOKEN=@TOKEN@
MACHINE_ID=@MACHINE_ID@
ZONE=@ZONE@
CAPACITY_CPU=@CAPACITY_CPU@
CAPACITY_MEM=@CAPACITY_MEM@
MACHINESITTER_SHA256=@MACHINESITTER_SHA256@
TASKSITTER_SHA256=@TASKSITTER_SHA256@

ROOT=${CEREBRO_ROOT:-}
BIND=${CEREBRO_BIND:-0.0.0.0}
PORT=${CEREBRO_PORT:-40000}
BIN=$ROOT/usr/local/bin
ETC=$ROOT/etc/cerebro
STATE=$ROOT/var/lib/cerebro/machinesitter
LOGS=$ROOT/var/log/cerebro
RUN=$ROOT/run/cerebro

log() { echo "cerebro-boot: $*" >&2; }

umask 022
mkdir -p "$BIN" "$ETC" "$STATE" "$LOGS" "$RUN"

# get URL DEST: one download (curl, else wget), with the token if any.
get() {
    url=$1
    dest=$2
    if [ -n "$TOKEN" ]; then set -- --header "Authorization: Bearer $TOKEN"; else set --; fi
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --connect-timeout 10 --max-time 600 -o "$dest" "$@" "$url" && return 0
    fi
    if command -v wget >/dev/null 2>&1; then
        wget -q -T 60 -O "$dest" "$@" "$url" && return 0
    fi
    return 1
}

# install NAME SHA256: download until the digest matches (the cluster may
# not answer yet), then put it in place executable.
install_binary() {
    part=$BIN/.$1.part
    tries=0
    while :; do
        tries=$((tries + 1))
        if get "$CLUSTER_URL/api/v1/binaries/$1" "$part" \
            && echo "$2  $part" | sha256sum -c - >/dev/null 2>&1; then
            break
        fi
        if [ "$tries" -ge 60 ]; then
            log "cannot download $1 with sha256 $2 from $CLUSTER_URL"
            rm -f "$part"
            exit 1
        fi
        log "download of $1 failed (try $tries), retrying"
        sleep 5
    done
    chmod 0755 "$part"
    mv -f "$part" "$BIN/$1"
}

install_binary machinesitter "$MACHINESITTER_SHA256"
install_binary tasksitter "$TASKSITTER_SHA256"

if [ -n "$TOKEN" ]; then
    (umask 077 && printf '%s\n' "$TOKEN" >"$ETC/token")
    chmod 0600 "$ETC/token"
fi

# imds PATH: an instance metadata value through IMDSv2.
imds() {
    base=http://169.254.169.254/latest
    if command -v curl >/dev/null 2>&1; then
        session=$(curl -fsS --connect-timeout 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$base/api/token") \
            && curl -fsS --connect-timeout 2 -H "X-aws-ec2-metadata-token: $session" "$base/meta-data/$1"
    else
        session=$(wget -q -T 2 -O - --method=PUT --header "X-aws-ec2-metadata-token-ttl-seconds: 300" "$base/api/token") \
            && wget -q -T 2 -O - --header "X-aws-ec2-metadata-token: $session" "$base/meta-data/$1"
    fi
}

if [ "${CEREBRO_ADVERTISE_ADDRESS+set}" = set ]; then
    ADVERTISE=$CEREBRO_ADVERTISE_ADDRESS
else
    ADVERTISE=
    tries=0
    while [ -z "$ADVERTISE" ] && [ "$tries" -lt 30 ]; do
        tries=$((tries + 1))
        if ip=$(imds local-ipv4) && [ -n "$ip" ]; then
            ADVERTISE=$ip:$PORT
        else
            sleep 2
        fi
    done
    if [ -z "$ADVERTISE" ]; then
        log "no private IPv4 from the instance metadata: the machinesitter advertises $BIND:$PORT"
    fi
fi

set -- --state-dir "$STATE" --bind "$BIND" --port "$PORT"
if [ -n "$ADVERTISE" ]; then set -- "$@" --advertise-address "$ADVERTISE"; fi
set -- "$@" --machine-id "$MACHINE_ID" --zone "$ZONE" --cluster-url "$CLUSTER_URL"
if [ -n "$TOKEN" ]; then
    set -- "$@" --token-file "$ETC/token"
else
    set -- "$@" --insecure
fi
set -- "$@" --tasksitter-bin "$BIN/tasksitter" \
    --capacity-cpu "$CAPACITY_CPU" --capacity-mem "$CAPACITY_MEM" --on-exit stop

if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
    exec_start=$BIN/machinesitter
    for arg in "$@"; do
        # systemd unquotes "..." with C escapes and expands %.
        quoted=$(printf '%s' "$arg" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g')
        exec_start="$exec_start \"$quoted\""
    done
    # KillMode=process (systemd.kill(5)): stopping or restarting the unit
    # signals the machinesitter alone. Its tasksitters and their workloads
    # share its cgroup; any other mode would kill them with it, and a
    # machinesitter that crashed and was restarted could then not re-adopt
    # them. A stop still ends them: the machinesitter's --on-exit stop
    # stops its tasks itself on SIGTERM.
    cat >/etc/systemd/system/cerebro-machinesitter.service <<UNIT
[Unit]
Description=Cerebro machinesitter (machine $MACHINE_ID, zone $ZONE)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=$exec_start
Restart=on-failure
RestartSec=5
KillMode=process
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now cerebro-machinesitter.service
    log "machinesitter started as cerebro-machinesitter.service"
else
    if command -v setsid >/dev/null 2>&1; then
        setsid "$BIN/machinesitter" "$@" </dev/null >>"$LOGS/machinesitter.log" 2>&1 &
    else
        nohup "$BIN/machinesitter" "$@" </dev/null >>"$LOGS/machinesitter.log" 2>&1 &
    fi
    echo $! >"$RUN/machinesitter.pid"
    log "machinesitter started, pid $!"
fi
exit 0
