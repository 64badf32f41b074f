#!/usr/bin/env bash
# Runs the airtext-sms cargo-fuzz targets for a bounded time each (default 120 s):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (installed here if missing). Not part of
# scripts/test.sh; the stable-toolchain stand-in is the `decoders_never_panic` proptest.
# Full libFuzzer logs go to ${TMPDIR:-/tmp}/airtext-fuzz-TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/../crates/sms"
seconds="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tpdu_decode gsm7_unpack)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/airtext/target-sms-fuzz}"
for t in "${targets[@]}"; do
  log="${TMPDIR:-/tmp}/airtext-fuzz-$t.log"
  echo "== fuzzing $t for ${seconds}s (log: $log)"
  rc=0
  mkdir -p "fuzz/corpus/$t"
  # New inputs go to fuzz/corpus/ (git-ignored); fuzz/seeds/ holds the committed seeds.
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" --jobs 1 -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)|SUMMARY|==[0-9]+== ERROR)' "$log" || true
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  if [ "$rc" -ne 0 ]; then echo "fuzz target $t failed (exit $rc); see $log" >&2; exit 1; fi
done
