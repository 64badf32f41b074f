#!/usr/bin/env bash
# airtext_bench.sh — the airtext-gateway target for smsbench (../shared/tools/smsbench).
#
# Measures the whole out-of-network path: HTTP `POST /v1/messages` (bearer token, durable in
# SQLite before its 201: the group's WAL is flushed first) → outbound queue → SMPP `submit_sm` → the
# harness's SMSC sink. Sources the harness's lib.sh (read-only, nothing copied here) and
# defines the target functions its README ("Adding a gateway") asks for.
#
#   crates/gateway/benches/smsbench/airtext_bench.sh                 # from anywhere
#   AIRTEXT_WINDOW=1 RUNS=1 COUNT=20000 VARIANTS="short long dlr" OUT_DIR=/tmp/x \
#       crates/gateway/benches/smsbench/airtext_bench.sh
#
# Knobs besides lib.sh's: AIRTEXT_WINDOW (SMPP window, 32), SMSBENCH_DIR (the harness,
# default ../shared/tools/smsbench from the repo root), CARGO_TARGET_DIR, AIRTEXT_SKIP_BUILD=1
# (measure the binaries copied by an earlier run, in AIRTEXT_BIN_DIR).
#
# Differences from the Kannel target, on purpose:
# - `hey` repeats one body, and sends are idempotent by client_id (a repeat is the first
#   message again). `hey` is therefore replaced, for this script only, by a shell function
#   running our own load generator (examples/smsbench_load.rs): same -n/-c/-t, keep-alive,
#   a fresh client_id per request, hey's output format.
# - variant `dlr`: the SMPP carrier asks for receipts (registered_delivery=1) and the sink
#   sends them; the gateway applies each to its message (sent → delivered, an event on the
#   sender's devices) instead of calling an HTTP URL, so REQ_DLR_CB is 0 and the receipts the
#   gateway applied are counted from its database into airtext-status.txt after the run.
# - TARGET is airtext-w<window>, so runs at window 1 and 32 stay apart in one results file.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)"
SMSBENCH_DIR=${SMSBENCH_DIR:-"$REPO/../shared/tools/smsbench"}
AIRTEXT_WINDOW=${AIRTEXT_WINDOW:-32}
# Not exported: lib.sh builds the sink with cargo too, into its own folder.
A_TARGET_DIR=${CARGO_TARGET_DIR:-"$HOME/.cache/airtext/target"}
unset CARGO_TARGET_DIR
# The binaries measured are copies: other builds in the shared target folder (tests, benches
# with other features) must not swap them between runs.
A_BIN_DIR=${AIRTEXT_BIN_DIR:-"$HOME/.cache/airtext/smsbench-bin"}
GATEWAY_BIN="$A_BIN_DIR/airtext-gateway"
LOAD_BIN="$A_BIN_DIR/smsbench_load"

# shellcheck source=/dev/null
. "$SMSBENCH_DIR/lib.sh"

TARGET="airtext-w$AIRTEXT_WINDOW"
A_PORT="" A_PID="" A_TOKEN="" A_DB="" A_BODY=""
A_DID="+14155550100"
A_TO="+12025550143"

target_prepare() {
    if [[ ${AIRTEXT_SKIP_BUILD:-0} == 1 && -x $GATEWAY_BIN && -x $LOAD_BIN ]]; then
        return 0
    fi
    command -v cargo > /dev/null || sb_die "cargo is needed to build the gateway"
    (cd "$REPO" && CARGO_TARGET_DIR="$A_TARGET_DIR" cargo build --release -p airtext-gateway --bin airtext-gateway --example smsbench_load) >&2 ||
        sb_die "building airtext-gateway failed"
    mkdir -p "$A_BIN_DIR"
    cp "$A_TARGET_DIR/release/airtext-gateway" "$GATEWAY_BIN.new" && mv "$GATEWAY_BIN.new" "$GATEWAY_BIN"
    cp "$A_TARGET_DIR/release/examples/smsbench_load" "$LOAD_BIN.new" && mv "$LOAD_BIN.new" "$LOAD_BIN"
}

target_describe() {
    echo "airtext-gateway $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) (release, the checkout's commit: with AIRTEXT_BIN_DIR the binary may be older), SQLite WAL group commit flushed (fdatasync) before each 201, smpp transceiver window=$AIRTEXT_WINDOW, no max_per_second, load: examples/smsbench_load (fresh client_id per request)"
}

a_json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

a_write_conf() { # DIR RECEIPTS
    cat > "$1/airtext.toml" << CONF
listen = "127.0.0.1:$A_PORT"
database_url = "sqlite://$A_DB"
[rate_limits.send]
per_minute = 100000000
burst = 10000000
[[carriers]]
name = "sink"
kind = "smpp"
host = "127.0.0.1"
port = $SINK_PORT
system_id = "bench"
password = "bench"
window = $AIRTEXT_WINDOW
delivery_receipts = $2
numbers = ["$A_DID"]
rates = [ { prefix = "+", cost_per_segment = 0.004 } ]
CONF
}

target_start() { # DIR VARIANT
    local d=$1 variant=$2 i receipts=false url
    [[ $variant == dlr ]] && receipts=true
    read -r A_PORT < <(sb_free_ports 1)
    A_DB="$d/airtext.db"
    a_write_conf "$d" "$receipts"
    # Warnings and errors only, as Kannel here logs panics only (log-level 4). Before aa77d4a
    # (2026-12-06) this said RUST_LOG, which the gateway does not read: runs before it logged at
    # info, a span per request.
    AIRTEXT_LOG=warn "$GATEWAY_BIN" --config "$d/airtext.toml" > "$d/airtext.stdout" 2> "$d/airtext.log" &
    A_PID=$!
    PIDS+=("$A_PID")
    TARGET_PIDS+=("$A_PID")
    url="http://127.0.0.1:$A_PORT"
    for ((i = 0; i < 300; i++)); do
        [[ $(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url/healthz") == 200 ]] && break
        sb_alive "$A_PID" || sb_die "airtext-gateway exited (see $d/airtext.log)"
        sleep 0.1
    done
    # Bound to the sink: an established connection from the gateway to the sink's port.
    for ((i = 0; i < 300; i++)); do
        ss -Htnp state established "( dport = :$SINK_PORT )" 2> /dev/null | grep -q "pid=$A_PID," && break
        sleep 0.1
    done
    ss -Htnp state established "( dport = :$SINK_PORT )" | grep -q "pid=$A_PID," ||
        sb_die "airtext-gateway did not connect to the sink (see $d/airtext.log)"
    sleep 0.3 # the bind itself
    curl -sf -X POST -H 'content-type: application/json' "$url/v1/accounts" \
        -d '{"username":"bench","password":"smsbench password"}' > /dev/null ||
        sb_die "sign-up failed"
    A_TOKEN=$(curl -sf -X POST -H 'content-type: application/json' "$url/v1/sessions" \
        -d '{"username":"bench","password":"smsbench password","device_name":"smsbench"}' | a_json token) ||
        sb_die "sign-in failed"
    curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $A_TOKEN" \
        "$url/v1/numbers" -d "{\"number\":\"$A_DID\"}" > /dev/null || sb_die "claiming $A_DID failed"
}

target_request() { # VARIANT
    REQ_URL="http://127.0.0.1:$A_PORT/v1/messages"
    case "$1" in
        short | dlr) A_BODY="Hello from smsbench" ;;
        long)
            A_BODY=$(printf 'abcdefghij%.0s' {1..30})
            REQ_PARTS=2
            ;;
        *) sb_die "unknown variant $1 (short, long, dlr)" ;;
    esac
    REQ_ARGS=(--token "$A_TOKEN" --to "$A_TO" --body "$A_BODY")
}

# lib.sh runs `hey -n N -c C -t T REQ_ARGS… URL` in a subshell; this function takes its place.
hey() { "$LOAD_BIN" "$@"; }

target_stop() { # DIR
    local d=$1
    sb_stop_pid "$A_PID" airtext-gateway 30
    # What the gateway recorded (it is stopped: the database is quiet).
    python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT status, count(*) FROM messages GROUP BY status ORDER BY status").fetchall()
left = db.execute("SELECT count(*) FROM outbound").fetchone()[0]
print(" ".join(f"{s}={n}" for s, n in rows), f"queued_jobs_left={left}")
' "$A_DB" > "$d/airtext-status.txt" || true
    sb_log "   airtext: $(cat "$d/airtext-status.txt")"
}

sb_main
