#!/usr/bin/env bash
# Regenerates crates/sms/tests/fixtures/*.json from the independent Python oracles
# (gsm0338, python-gsmmodem-new, pdusmsconverter). Idempotent and quiet; the output is
# deterministic, so a clean `git status` afterwards means the committed fixtures are current.
# Then: cargo test -p airtext-sms --test oracle
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
if ! "$py" -c 'import gsm0338, gsmmodem.pdu, smspdu' >/dev/null 2>&1; then
  "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    gsm0338 python-gsmmodem-new pdusmsconverter
fi
"$py" "$here/make_fixtures.py"
