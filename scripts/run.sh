#!/usr/bin/env bash
# Runs Airtext locally: a gateway on its embedded default (SQLite in .run/airtext.db, simulator
# carrier, http://127.0.0.1:8080) serving the web portal at its own address, and, when there is a
# display, the app pointed at it, so you can text a simulated phone within a minute. Closing the
# app stops the gateway. With no display ($DISPLAY and $WAYLAND_DISPLAY unset) only the gateway
# runs, and this prints the portal's URL (open it in a browser, here or through an SSH tunnel)
# and how to text with the `airtext` CLI. Installs what it needs; idempotent. Extra arguments go
# to the gateway.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$AIRTEXT_ROOT"

need_rust
need_build_tools

listen="${AIRTEXT_LISTEN:-127.0.0.1:8080}"
gateway_url="http://$listen"
data_dir="${AIRTEXT_RUN_DIR:-$AIRTEXT_ROOT/.run}"
mkdir -p "$data_dir"

have_display=0
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then have_display=1; fi

# The release gateway embeds ui/dist (crates/gateway/build.rs): build the UI first.
need_node
say "building the UI (the web portal the gateway serves)"
(cd ui && { [ -d node_modules ] || npm install --no-audit --no-fund --no-save; } && npm run build)
say "building the gateway and the CLI (first build takes a few minutes)"
cargo build --release --locked -p airtext-gateway -p airtext-client
gateway="$CARGO_TARGET_DIR/release/airtext-gateway"
cli="$CARGO_TARGET_DIR/release/airtext"

if [ "$have_display" -eq 0 ]; then
  say "no display: starting the gateway only (on $gateway_url, database $data_dir/airtext.db)"
  cat >&2 <<HINT
    The web portal: open $gateway_url/ in a browser (from another machine:
      ssh -L ${listen##*:}:$listen THIS-MACHINE, then open http://localhost:${listen##*:}/).
    Create an account there, pick a number, and text +1 206 555 0123 (a simulated phone).

    The app needs a display. Or text from this terminal with the CLI (in another terminal):
      export AIRTEXT_GATEWAY=$gateway_url AIRTEXT_DATA_DIR=$data_dir/cli AIRTEXT_PASSWORD='a long passphrase'
      $cli signup alice                       # creates the account and signs in
      $cli numbers search --area-code 415     # numbers you can claim
      $cli numbers claim +1415…               # one of them
      $cli send +12065550123 "Hello from Airtext"
      $cli watch                              # live: replies and status changes
    A simulated outside phone replies with:
      curl -s -X POST $gateway_url/v1/simulator/inbound -H "authorization: Bearer \$TOKEN" \\
           -H 'content-type: application/json' -d '{"from":"+12065550123","to":"+1415…","body":"Hi!"}'
    (\$TOKEN: "token" in $data_dir/cli/airtext.json.) Ctrl-C stops the gateway.
HINT
  cd "$data_dir"
  exec "$gateway" --listen "$listen" --simulator true "$@"
fi

# --- the app: system libraries (WebKitGTK), the Tauri binary with the UI inside ---
apt_install libwebkit2gtk-4.1-dev build-essential curl wget file libssl-dev libxdo-dev \
  libayatana-appindicator3-dev librsvg2-dev pkg-config
say "building the app (first build takes several minutes)"
cargo build --release --locked -p airtext-app --features tauri/custom-protocol

say "gateway on $gateway_url, web portal at $gateway_url/ (database: $data_dir/airtext.db, log: $data_dir/gateway.log)"
(cd "$data_dir" && exec "$gateway" --listen "$listen" --simulator true "$@") >"$data_dir/gateway.log" 2>&1 &
gateway_pid=$!
trap 'kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$gateway_url/healthz" >/dev/null 2>&1 && break
  kill -0 "$gateway_pid" 2>/dev/null || die "the gateway did not start: see $data_dir/gateway.log"
  sleep 0.1
done

say "starting the app (the gateway stops when you close it)"
cat >&2 <<HINT
    In the app: Continue (the gateway is filled in), create an account, pick a number, then
    start a conversation with +1 206 555 0123 (a simulated outside phone).
HINT
AIRTEXT_GATEWAY="$gateway_url" AIRTEXT_DATA_DIR="${AIRTEXT_APP_DATA_DIR:-$data_dir/app}" \
  "$CARGO_TARGET_DIR/release/airtext-app" || say "the app exited with status $?"
