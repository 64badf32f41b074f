#!/usr/bin/env bash
# Runs Airtext locally: a gateway on its embedded default (SQLite in ./airtext.db, simulator
# carrier, http://127.0.0.1:8080). Installs what it needs; idempotent. Ctrl-C stops it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$AIRTEXT_ROOT"

need_rust
need_build_tools

say "building the gateway and the CLI (first build takes a few minutes)"
cargo build --release --locked -p airtext-gateway -p airtext-client

data_dir="${AIRTEXT_RUN_DIR:-$AIRTEXT_ROOT/.run}"
mkdir -p "$data_dir"
cd "$data_dir"
say "gateway on http://127.0.0.1:8080 (database: $data_dir/airtext.db)"
cat >&2 <<HINT
    Try it from another terminal:
      curl -s http://127.0.0.1:8080/healthz
      curl -s http://127.0.0.1:8080/v1/openapi.json | head -c 300
HINT
exec "$CARGO_TARGET_DIR/release/airtext-gateway" "$@"
