#!/usr/bin/env bash
# compare.sh — Kannel and airtext-gateway through the same smsbench harness, in one run, at
# SMPP window 1 and 32 (Kannel's max-pending-submits = the window). One results folder per
# window (the harness names Kannel "kannel" whatever its window), one median table each.
#
#   crates/gateway/benches/smsbench/compare.sh              # RUNS=1 COUNT=20000 by default
#   RUNS=3 WINDOWS="32" VARIANTS="short dlr" OUT=/tmp/cmp crates/gateway/benches/smsbench/compare.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
SMSBENCH_DIR=${SMSBENCH_DIR:-"$REPO/../shared/tools/smsbench"}
export RUNS=${RUNS:-1} COUNT=${COUNT:-20000} VARIANTS=${VARIANTS:-"short long dlr"}
WINDOWS=${WINDOWS:-"1 32"}
OUT=${OUT:-$(mktemp -d -t airtext-smsbench.XXXXXX)}
built=${AIRTEXT_SKIP_BUILD:-0}
for w in $WINDOWS; do
    dir="$OUT/window-$w"
    mkdir -p "$dir"
    for ((r = 1; r <= RUNS; r++)); do
        # The harness builds its sink into its own folder only when CARGO_TARGET_DIR is unset
        # (ours, if set, is for the gateway).
        env -u CARGO_TARGET_DIR OUT_DIR="$dir" RUNS=1 RUN_FIRST=$r NO_REPORT=1 MAX_PENDING=$w \
            "$SMSBENCH_DIR/kannel_bench.sh"
        OUT_DIR=$dir RUNS=1 RUN_FIRST=$r NO_REPORT=1 AIRTEXT_WINDOW=$w AIRTEXT_SKIP_BUILD=$built \
            "$HERE/airtext_bench.sh"
        built=1
    done
done
for w in $WINDOWS; do
    echo "### window $w"
    python3 "$SMSBENCH_DIR/report.py" "$OUT/window-$w/results.tsv"
done
echo "raw results: $OUT" >&2
