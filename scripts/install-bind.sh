#!/usr/bin/env bash
# Installs BIND 9 (Debian's bind9, bind9-utils, bind9-dnsutils, dnsutils)
# for the rfc2136 tests: `named` (run in the foreground by
# cerebro_tests::bind::BindServer), `tsig-keygen` (its key) and `dig`/
# `nsupdate` (for people poking at it by hand).
#
# Idempotent: does nothing when all three commands are there. Fails loudly
# (non-zero, with the reason) when it cannot install them.
set -euo pipefail

fail() { echo "scripts/install-bind.sh: $*" >&2; exit 1; }

# named and tsig-keygen live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

have_all() {
    command -v named >/dev/null && command -v tsig-keygen >/dev/null && command -v dig >/dev/null
}

have_all && exit 0

[ "$(id -u)" = 0 ] || fail "named, tsig-keygen or dig is missing and installing BIND needs root"
command -v apt-get >/dev/null || fail "named, tsig-keygen or dig is missing and there is no apt-get to install BIND with"
apt-get update || fail "apt-get update failed"
# Debian's policy-rc.d (in containers) keeps the packaged service from
# starting; the tests run their own named in the foreground anyway.
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    bind9 bind9-utils bind9-dnsutils dnsutils || fail "apt-get install bind9 bind9-utils bind9-dnsutils dnsutils failed"
have_all || fail "named, tsig-keygen or dig is still missing after apt-get install"
echo "scripts/install-bind.sh: $(named -v) ready"
