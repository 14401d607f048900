#!/usr/bin/env bash
# HTTP measurements of `policy-mesh serve` (release build):
#   1. idle RSS with the shipped policy;
#   2. POST /v1/decide throughput and latency percentiles with wrk, 1 KB body;
#   3. RSS after that load;
#   4. idle RSS and decide throughput with a policy of 100 000 keywords.
# Usage: scripts/bench-server.sh   (needs wrk and curl; DURATION, CONNECTIONS,
# THREADS and PORT may be set in the environment)
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PORT=${PORT:-18181}
BIN=target/release/policy-mesh

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release --bin policy-mesh >&2

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A 1 KB chat request that matches no keyword, so every byte is scanned and
# every rule is tried.
text=$(printf 'Please summarise the quarterly planning notes for the team. %.0s' $(seq 1 16) | head -c 960)
printf '{"messages":[{"role":"user","content":"%s"}]}' "$text" > "$work/body.json"
export BODY_FILE="$work/body.json"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

start_server() { # $1: policy folder
    BIND_ADDR=127.0.0.1:$PORT POLICY_DIR=$1 RUST_LOG=warn "$BIN" serve &
    server_pid=$!
    for _ in $(seq 1 200); do
        curl -fsS "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "the server did not come up" >&2; exit 1
}

stop_server() {
    kill "$server_pid"; wait "$server_pid" || true; server_pid=
}

load() { # prints requests/s and latency percentiles
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s benches/decide.lua \
        "http://127.0.0.1:$PORT/v1/decide" | tee "$work/wrk.txt" >&2
    if grep -q "Non-2xx" "$work/wrk.txt"; then echo "some requests failed" >&2; exit 1; fi
    awk '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} END {printf "%s req/s, p50 %s, p99 %s\n", rps, p50, p99}' "$work/wrk.txt"
}

echo "body: $(wc -c < "$BODY_FILE") bytes; wrk -t$THREADS -c$CONNECTIONS -d$DURATION; $(nproc) cores"

start_server policies
sleep 1 # let start-up allocations settle before reading RSS
echo "shipped policy: idle RSS $(rss_kb "$server_pid") KB"
echo "shipped policy: /v1/decide $(load)"
echo "shipped policy: RSS after load $(rss_kb "$server_pid") KB"
stop_server

mkdir "$work/big"
{
    echo "version: 1"
    echo "rules:"
    for r in $(seq 0 9); do
        echo "  - id: big-$r"
        echo "    when:"
        echo "      keywords:"
        seq -f "        - kw${r}x%06g" 1 10000
        echo "    route: local"
    done
} > "$work/big/policy.yaml"
start_server "$work/big"
sleep 1
echo "100000 keywords: idle RSS $(rss_kb "$server_pid") KB"
echo "100000 keywords: /v1/decide $(load)"
echo "100000 keywords: RSS after load $(rss_kb "$server_pid") KB"
stop_server
