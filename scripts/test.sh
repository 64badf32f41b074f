#!/usr/bin/env bash
# Runs every test of Airtext: formatting, lints, unit, integration and story tests, with the
# store conformance suite on SQLite and on PostgreSQL. Installs what it needs; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$AIRTEXT_ROOT"

need_rust
need_build_tools
apt_install postgresql postgresql-client
# The workspace includes the Tauri app, so clippy and the build need WebKitGTK's headers before
# any cargo step; nginx fronts the two-node scale-out test.
apt_install libwebkit2gtk-4.1-dev libssl-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev \
  file nginx

# --- PostgreSQL: start it when it is installed but not running; make the test database. ---
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_ready; then
  say "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    done
  fi
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
if [ -z "${AIRTEXT_TEST_DATABASE_URL:-}" ] && pg_ready; then
  # Trust auth on loopback for the postgres user is the CI setup; create the database if absent.
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'create database test' >/dev/null 2>&1 \
      || as_root -u postgres psql -c 'create database test' >/dev/null 2>&1 || true
  fi
  if psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    export AIRTEXT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
  fi
fi
if [ -n "${AIRTEXT_TEST_DATABASE_URL:-}" ]; then
  say "PostgreSQL tests run against $AIRTEXT_TEST_DATABASE_URL"
else
  printf '\n\033[1;33m*** WARNING: no PostgreSQL reachable: every PostgreSQL test will be SKIPPED ***\033[0m\n\n' >&2
fi

# --- Peers the tests talk to: a SOCKS5 proxy, Twilio's spec as a validating mock, and the
# official twilio package's webhook signature validator. A missing one fails its tests. ---
apt_install microsocks
need_node
pip_install twilio
# ModemManager as python-dbusmock plays it, on a private dbus-daemon (its dbus-python dependency
# builds against libdbus's headers).
apt_install dbus libdbus-1-dev
pip_install python-dbusmock
if [ ! -x "$HOME/.cache/airtext/prism/node_modules/.bin/prism" ]; then
  say "installing the prism mock server (Twilio's OpenAPI spec)"
  npm install --prefix "$HOME/.cache/airtext/prism" --no-audit --no-fund --loglevel=error @stoplight/prism-cli@5
fi
export AIRTEXT_PRISM="$HOME/.cache/airtext/prism/node_modules/.bin/prism"
export AIRTEXT_REQUIRE_MICROSOCKS=1 AIRTEXT_TEST_REQUIRE_TWILIO_TOOLS=1 AIRTEXT_TEST_REQUIRE_DBUSMOCK=1
export AIRTEXT_TEST_REQUIRE_POSTGRES=1 AIRTEXT_TEST_REQUIRE_NGINX=1

# --- The independent oracle for airtext-sms (Python implementations of GSM 03.38 and PDUs). ---
if [ -x crates/sms/tests/oracle/regenerate.sh ]; then
  say "regenerating airtext-sms oracle fixtures"
  crates/sms/tests/oracle/regenerate.sh
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo test"
cargo test --workspace --locked 2>&1 | tee "${TMPDIR:-/tmp}/airtext-test.log"

say "TypeScript bindings of airtext-api match ui/src/lib/bindings"
cargo test --locked -p airtext-api --features ts --test typescript_bindings

# --- The UI: type check, unit tests, and browser tests against a real gateway. ---
apt_install chromium fonts-noto-color-emoji
say "ui: npm install, svelte-check, vitest"
# Not `npm ci`: vite names an optional dependency (napi-windows-process-start-time) that the
# registry does not serve, which `npm ci` treats as a lock-file mismatch; `npm install` with
# the committed lock installs the same tree and skips the missing optional package.
(cd ui && npm install --no-audit --no-fund --no-save --loglevel=error && npm run check && npm test)
say "ui: browser tests (Debian chromium) against a real gateway"
cargo build --locked -p airtext-gateway
(cd ui && AIRTEXT_SCREENSHOTS=0 AIRTEXT_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/airtext-gateway" npm run test:browser)

# ════════════════════ the app (src-tauri): owned by the app shell; keep this block together ════════════════════
# System packages for building WebKitGTK apps, a virtual display, WebKitWebDriver, a session bus,
# a keyring and a notification daemon (shared/PLATFORM.md); tauri-driver; then: the mobile-cfg
# compile check, the TypeScript bindings of the cache types, and the real app end to end under
# Xvfb (tauri-driver + WebKitWebDriver, real gateway, CLI as a second device, D-Bus notifications,
# keyring), and once more with no D-Bus session at all (no keyring). AIRTEXT_APP_E2E=0 skips the
# end-to-end part.
apt_install libwebkit2gtk-4.1-dev build-essential curl wget file libssl-dev libxdo-dev \
  libayatana-appindicator3-dev librsvg2-dev pkg-config xvfb xauth webkit2gtk-driver dbus-x11 \
  dunst gnome-keyring keyutils libsecret-tools libnotify-bin imagemagick python3
tauri_driver="$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")"
if [ ! -x "$tauri_driver" ]; then
  say "app: installing tauri-driver"
  cargo install tauri-driver --locked --version '^2'
fi

say "app: the shell's mobile code compiles (--cfg mobile; docs/mobile.md)"
cargo rustc --locked -p airtext-app --lib --profile check -- --cfg mobile --cfg airtext_mobile_check

say "app: TypeScript bindings of the cache types match ui/src/lib/bindings/app"
cargo test --locked -p airtext-app --features ts --test typescript_bindings

if [ "${AIRTEXT_APP_E2E:-1}" != 0 ]; then
  say "app: building the UI and the app with the UI embedded"
  (cd ui && { [ -d node_modules ] || npm install --no-audit --no-fund --no-save; } && npm run build)
  # Last cargo build before the run: a build without custom-protocol would replace the binary
  # with one that loads the Vite dev server.
  cargo build --locked -p airtext-gateway -p airtext-client -p airtext-app --features tauri/custom-protocol
  (cd tests/webdriver && npm ci --no-audit --no-fund --silent)
  say "app: end-to-end tests of the real app (Xvfb, tauri-driver, WebKitWebDriver, keyring, D-Bus)"
  app_home="$(mktemp -d)"
  # A throwaway HOME: its own keyring (unlocked with a throwaway password) and window state.
  # Screenshots (docs/screenshots/app-*.png) only when asked (AIRTEXT_SCREENSHOTS=1), as for the
  # UI's browser tests: they change on every run.
  HOME="$app_home" TAURI_DRIVER="$tauri_driver" AIRTEXT_SCREENSHOTS="${AIRTEXT_SCREENSHOTS:-0}" \
    xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash -c '
      eval "$(printf airtext-test | gnome-keyring-daemon --unlock --components=secrets)"
      export GNOME_KEYRING_CONTROL
      exec node tests/webdriver/run.mjs'
  rm -rf "$app_home"
  say "app: end-to-end with no D-Bus session (no keyring): starts, signs in, sign-in in memory or a 0600 file"
  TAURI_DRIVER="$tauri_driver" AIRTEXT_SCREENSHOTS="${AIRTEXT_SCREENSHOTS:-0}" \
    env -u DBUS_SESSION_BUS_ADDRESS xvfb-run -a -s "-screen 0 1280x800x24" node tests/webdriver/no-keyring.mjs
fi
# ════════════════════ end of the app block ════════════════════

# --- The Debian package (docs/deploy.md): it builds, it holds the binary, the unit and the
# conffile, and its unit passes `systemd-analyze verify` (which needs no running systemd). ---
apt_install systemd dpkg-dev
if ! command -v cargo-deb >/dev/null; then
  say "package: installing cargo-deb"
  cargo install cargo-deb --locked
fi
say "package: cargo deb -p airtext-gateway (a release build)"
# cargo deb builds in the same CARGO_TARGET_DIR and prints the package's path last.
deb="$(cargo deb --locked -p airtext-gateway | tail -n 1)"
say "package: contents of $(basename "$deb")"
contents="$(dpkg-deb -c "$deb")"
for path in usr/bin/airtext-gateway lib/systemd/system/airtext-gateway.service \
  etc/airtext/gateway.toml; do
  grep -Eq " \./(usr/)?$path\$" <<<"$contents" || die "the package lacks /$path"
done
deb_root="$(mktemp -d)"
dpkg-deb -x "$deb" "$deb_root"
dpkg-deb -e "$deb" "$deb_root/DEBIAN"
grep -qx /etc/airtext/gateway.toml "$deb_root/DEBIAN/conffiles" \
  || die "/etc/airtext/gateway.toml is not a conffile"
grep -Eq '^database_url = "sqlite:///var/lib/airtext/' "$deb_root/etc/airtext/gateway.toml" \
  || die "the packaged configuration does not keep SQLite in /var/lib/airtext"
say "package: systemd-analyze verify on its unit"
unit="$(find "$deb_root" -path '*/systemd/system/airtext-gateway.service' | head -n 1)"
# The unit's ExecStart must exist for verify: point it at the binary the package holds.
mkdir -p "$deb_root/verify"
sed "s|/usr/bin/airtext-gateway|$deb_root/usr/bin/airtext-gateway|" "$unit" \
  >"$deb_root/verify/airtext-gateway.service"
# verify only warns about, e.g., a misspelt key: any word about the unit is a failure.
verified="$(systemd-analyze verify "$deb_root/verify/airtext-gateway.service" 2>&1)" \
  || die "systemd-analyze verify: $verified"
if grep -q airtext-gateway <<<"$verified"; then die "systemd-analyze verify: $verified"; fi
systemd-analyze security --offline=true --threshold=20 "$deb_root/verify/airtext-gateway.service" \
  | tail -n 1
rm -rf "$deb_root"

if [ -z "${AIRTEXT_TEST_DATABASE_URL:-}" ]; then
  printf '\n\033[1;33m*** WARNING: PostgreSQL tests were SKIPPED (no server reachable) ***\033[0m\n' >&2
fi
say "all tests passed"
