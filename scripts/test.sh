#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what the tests need
# when it is missing, and fails loudly (never skips) when something they
# need cannot be had: the tests use real cgroups, real users and real processes.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "scripts/test.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "the tests need root: they create cgroups and switch to the user 'nobody'"

# Commands the test workloads use, and the Debian packages that provide them.
missing=()
for tool in setsid:util-linux head:coreutils tail:coreutils seq:coreutils id:coreutils; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
# The web UI tests drive headless Chromium through chromedriver.
browser=()
command -v chromium >/dev/null || browser+=(chromium)
command -v chromedriver >/dev/null || browser+=(chromium-driver)
if [ ${#browser[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${browser[@]}"
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null || fail "chromium and chromedriver are needed for the UI tests"
getent passwd nobody >/dev/null || fail "the user 'nobody' is missing"
grep -qE ' - cgroup2? ' /proc/self/mountinfo || fail "no cgroup hierarchy is mounted; the cgroup tests cannot run"
# The EC2 tests talk to moto's server (EC2 and Route 53 over their real wire protocol).
scripts/install-moto.sh || fail "moto is needed for the EC2 tests"
# The rfc2136 tests run a real BIND 9 named in the foreground.
scripts/install-bind.sh || fail "BIND is needed for the rfc2136 tests"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The tests start the real binaries of other packages, which `cargo test`
# does not build; they are built here rather than from inside a test.
cargo build --workspace --bins
cargo test --workspace
# Benchmarks are not tests; the smoke run keeps every one of them building and running.
scripts/bench.sh all --smoke
