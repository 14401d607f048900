#!/usr/bin/env bash
# Gateway overhead of POST /v1/chat.
#
# One run, one machine, one load generator (wrk): a fast fake Ollama
# (examples/fake_upstream.rs) is called directly, then through Policy Mesh
# with the audit store off, then with it on (SQLite). Each step runs at one
# connection (latency: the added p50 and p99) and at CONNECTIONS connections
# (throughput). A last step, audit off, routes to a provider whose port
# refuses connections with the fake as its fallback: the time from a
# refused connection to the fallback's answer (NO_FALLBACK=1 leaves it out,
# for builds that predate fallback). Prints a Markdown table.
#
# Usage (from the repository root; needs wrk and curl):
#   scripts/bench-chat.sh [SECONDS_PER_STEP] [CONNECTIONS]
# Defaults: 10 seconds, 32 connections. WRK_THREADS (default 2) sets wrk's threads.
# POLICY_MESH_BIN measures another build of the gateway (say, an earlier
# commit's) against the same upstream.
set -euo pipefail

SECONDS_PER_STEP=${1:-10}
CONNECTIONS=${2:-32}
WRK_THREADS=${WRK_THREADS:-2}

log() { printf 'bench-chat: %s\n' "$*" >&2; }

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

root=$(pwd)
if [ -n "${POLICY_MESH_BIN:-}" ]; then
    cargo build --release --quiet --example fake_upstream
    bin=$POLICY_MESH_BIN
else
    cargo build --release --quiet --bin policy-mesh --example fake_upstream
    bin="$root/target/release/policy-mesh"
fi
upstream_bin="$root/target/release/examples/fake_upstream"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {
    local url=$1
    for _ in $(seq 1 500); do
        curl -fs -o /dev/null "$url" -X "${2:-GET}" ${3:+-H 'Content-Type: application/json' -d "$3"} && return 0
        sleep 0.02
    done
    log "no answer from $url"
    exit 1
}

mkdir -p "$work/policies" "$work/fallback"
printf 'version: 1\ndefaults:\n  provider: local\n' >"$work/policies/p.yaml"
# Nothing listens on this port: every first attempt is refused. The circuit
# never opens, so every request pays the refused connection.
refused_port=$(free_port)
cat >"$work/fallback/p.yaml" <<EOF
version: 1
providers:
  - id: down
    api: ollama
    url: http://127.0.0.1:$refused_port
    trust: local
    model: bench
    circuit: { failures: 4000000000 }
rules:
  - id: all
    route: down
    fallback: [local]
EOF

upstream_port=$(free_port)
"$upstream_bin" "127.0.0.1:$upstream_port" >/dev/null &
pids+=($!)

direct_body='{"model":"bench","messages":[{"role":"user","content":"hello"}],"stream":false}'
chat_body='{"messages":[{"role":"user","content":"hello"}]}'
wait_http "http://127.0.0.1:$upstream_port/api/chat" POST "$direct_body"

gateway_port=
start_gateway() { # $1: name, $2: AUDIT_ENABLED, $3: policy folder; sets gateway_port
    gateway_port=$(free_port)
    (cd "$work" && exec env -i PATH="$PATH" \
        BIND_ADDR="127.0.0.1:$gateway_port" POLICY_DIR="${3:-$work/policies}" \
        LOCAL_LLM_URL="http://127.0.0.1:$upstream_port" \
        DATABASE_URL="sqlite://$work/$1.db" AUDIT_ENABLED="$2" \
        RUST_LOG=info "$bin" serve >"$work/$1.log" 2>&1) &
    pids+=($!)
    wait_http "http://127.0.0.1:$gateway_port/v1/health"
}

start_gateway audit-off false
off_port=$gateway_port
start_gateway audit-on true
on_port=$gateway_port
targets="direct off on"
if [ -z "${NO_FALLBACK:-}" ]; then
    start_gateway fallback false "$work/fallback"
    fallback_port=$gateway_port
    targets="$targets fallback"
fi

lua() { # $1: file, $2: body
    cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$2'
EOF
}
lua "$work/direct.lua" "$direct_body"
lua "$work/chat.lua" "$chat_body"

# Milliseconds from wrk's "123.45us" / "1.23ms" / "1.02s".
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { print v }
    }'
}

# Prints "p50_ms p99_ms requests_per_second errors".
measure() { # $1: url, $2: lua, $3: connections
    local threads=$WRK_THREADS out p50 p99 rps errors
    ((threads > $3)) && threads=$3
    wrk -t"$threads" -c"$3" -d2s -s "$2" "$1" >/dev/null # warm-up
    out=$(wrk -t"$threads" -c"$3" -d"${SECONDS_PER_STEP}s" --latency -s "$2" "$1")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    rps=$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out" | tr '\n' ' ')
    echo "$(to_ms "$p50") $(to_ms "$p99") $rps ${errors:-none}"
}

declare -A result
for target in $targets; do
    case $target in
    direct) url="http://127.0.0.1:$upstream_port/api/chat" script="$work/direct.lua" ;;
    off) url="http://127.0.0.1:$off_port/v1/chat" script="$work/chat.lua" ;;
    on) url="http://127.0.0.1:$on_port/v1/chat" script="$work/chat.lua" ;;
    fallback) url="http://127.0.0.1:$fallback_port/v1/chat" script="$work/chat.lua" ;;
    esac
    for c in 1 "$CONNECTIONS"; do
        log "$target, $c connection(s), ${SECONDS_PER_STEP}s"
        result[$target,$c]=$(measure "$url" "$script" "$c")
    done
done

rows=$(sqlite3 "$work/audit-on.db" 'SELECT COUNT(*) FROM audit_events' 2>/dev/null || echo "?")

field() { awk -v i="$2" '{ print $i }' <<<"${result[$1]}"; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

echo "| path | conns | p50 ms | p99 ms | req/s | added p50 ms | added p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|"
for c in 1 "$CONNECTIONS"; do
    for target in $targets; do
        p50=$(field "$target,$c" 1) p99=$(field "$target,$c" 2) rps=$(field "$target,$c" 3)
        errors=$(cut -d' ' -f4- <<<"${result[$target,$c]}")
        if [[ $target == direct ]]; then
            added50="" added99=""
        else
            added50=$(diff_ms "$p50" "$(field "direct,$c" 1)")
            added99=$(diff_ms "$p99" "$(field "direct,$c" 2)")
        fi
        case $target in
        direct) name="upstream direct" ;;
        fallback) name="gateway, audit off, first provider refused" ;;
        *) name="gateway, audit $target" ;;
        esac
        echo "| $name | $c | $p50 | $p99 | $rps | $added50 | $added99 | $errors |"
    done
done
echo
echo "Throughput at $CONNECTIONS connections: gateway audit off / direct = $(ratio "$(field "off,$CONNECTIONS" 3)" "$(field "direct,$CONNECTIONS" 3)"), audit on / direct = $(ratio "$(field "on,$CONNECTIONS" 3)" "$(field "direct,$CONNECTIONS" 3)"), audit on / audit off = $(ratio "$(field "on,$CONNECTIONS" 3)" "$(field "off,$CONNECTIONS" 3)")."
echo "Audit rows written by the audit-on gateway: $rows."
