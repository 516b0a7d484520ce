#!/usr/bin/env bash
# Installs moto's server (the EC2 and Route 53 stand-in the EC2 tests talk
# to) into a virtualenv at $CARGO_TARGET_DIR/moto-venv (target/moto-venv by
# default), where cerebro_tests::moto::MotoServer looks for it.
#
# Idempotent: a stamp file records the pinned version once the server has
# been seen answering; a second run with the stamp in place does nothing.
# Fails loudly (non-zero, with the reason) when it cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
target="${CARGO_TARGET_DIR:-target}"
venv="$target/moto-venv"
stamp="$venv/.cerebro-moto-$MOTO_VERSION"

fail() { echo "scripts/install-moto.sh: $*" >&2; exit 1; }

# A venv moved or copied elsewhere keeps its old paths in its scripts:
# the stamp counts only while the server still starts from here.
[ -f "$stamp" ] && "$venv/bin/moto_server" --help >/dev/null 2>&1 && exit 0

# moto 5 needs Python >= 3.10 with venv and ensurepip (Debian splits the
# latter into python3-venv).
usable() {
    "$1" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 10)' 2>/dev/null
}
python=python3
if ! command -v python3 >/dev/null || ! usable python3; then
    [ "$(id -u)" = 0 ] || fail "python3 (>= 3.10) with venv is missing and installing it needs root"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
    # A python3 earlier on PATH (pyenv, /usr/local) may still lack venv:
    # the system one just installed has it.
    python=/usr/bin/python3
    usable "$python" || fail "$python (>= 3.10, with venv) is still not usable after apt-get install"
fi

rm -rf "$venv"
mkdir -p "$target"
"$python" -m venv "$venv" || fail "could not create the virtualenv $venv"
"$venv/bin/pip" install --quiet --upgrade pip || fail "could not upgrade pip in $venv"

# Starts the server on a free port and checks that it answers EC2
# DescribeInstances and Route 53 ListHostedZones; returns non-zero otherwise.
smoke_test() {
    local log port pid ok=1
    log="$(mktemp)"
    port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    pid=$!
    local auth_ec2='AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0'
    local auth_r53='AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0'
    for _ in $(seq 1 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/data.json"; then
            ok=0
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if [ "$ok" = 0 ]; then
        curl -sf -H "Authorization: $auth_ec2" \
            --data 'Action=DescribeInstances&Version=2016-11-15' \
            "http://127.0.0.1:$port/" | grep -q DescribeInstancesResponse || ok=1
    fi
    if [ "$ok" = 0 ]; then
        curl -sf -H "Authorization: $auth_r53" \
            "http://127.0.0.1:$port/2013-04-01/hostedzone" | grep -q ListHostedZonesResponse || ok=1
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$ok" = 0 ] || { echo "moto_server did not answer; its log:" >&2; cat "$log" >&2; }
    rm -f "$log"
    return "$ok"
}

command -v curl >/dev/null || fail "curl is needed (to check that moto_server answers)"

# moto with its server extra, pinned (about 30 s and 300 MB once).
"$venv/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" || fail "pip install moto[server]==$MOTO_VERSION failed"
smoke_test || fail "moto_server $MOTO_VERSION does not answer EC2 DescribeInstances and Route 53 ListHostedZones"
touch "$stamp"
echo "scripts/install-moto.sh: moto $MOTO_VERSION ready in $venv"
