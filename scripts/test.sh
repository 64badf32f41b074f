#!/usr/bin/env bash
# Runs every test of Airtext: formatting, lints, unit, integration and story tests, with the
# store conformance suite on SQLite and on PostgreSQL. Installs what it needs; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$AIRTEXT_ROOT"

need_rust
need_build_tools
apt_install postgresql postgresql-client

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
need_node
apt_install chromium fonts-noto-color-emoji
say "ui: npm ci, svelte-check, vitest"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run check && npm test)
say "ui: browser tests (Debian chromium) against a real gateway"
cargo build --locked -p airtext-gateway
(cd ui && AIRTEXT_SCREENSHOTS=0 AIRTEXT_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/airtext-gateway" npm run test:browser)

if [ -z "${AIRTEXT_TEST_DATABASE_URL:-}" ]; then
  printf '\n\033[1;33m*** WARNING: PostgreSQL tests were SKIPPED (no server reachable) ***\033[0m\n' >&2
fi
say "all tests passed"
